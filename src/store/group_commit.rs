//! Group commit: work items that arrive while a commit is under way wait for it to end and then go
//! together in the next one, so that a burst costs one commit instead of one each. A caller gets
//! its answer only after the commit that holds its item, so nothing is reported as stored before
//! it is. With no burst there is no waiting: a lone item is committed at once.
//!
//! Several groups may be committed at once (Postgres runs concurrent transactions and merges their
//! WAL flushes; SQLite takes one): callers beyond that wait, and their items gather meanwhile.
//!
//! The commit runs in a task of its own: a caller that goes away (a client that disconnects)
//! neither cuts a transaction off halfway nor leaves the others in its group without an answer.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;

pub struct GroupCommit<T, R> {
    waiting: Mutex<Vec<(T, oneshot::Sender<R>)>>,
    /// A permit is held while a group is being committed; the next groups form meanwhile.
    committing: tokio::sync::Semaphore,
    /// Items per group at most; the rest wait for the next commit.
    max_group: usize,
}

impl<T, R> std::fmt::Debug for GroupCommit<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl<T, R> Default for GroupCommit<T, R> {
    /// One commit at a time, groups of any size.
    fn default() -> Self {
        Self::new(1, usize::MAX)
    }
}

impl<T, R> GroupCommit<T, R> {
    /// `in_flight` commits at once, each of at most `max_group` items.
    pub fn new(in_flight: usize, max_group: usize) -> Self {
        Self {
            waiting: Mutex::new(Vec::new()),
            committing: tokio::sync::Semaphore::new(in_flight.max(1)),
            max_group: max_group.max(1),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Commits `item` with whatever else is waiting, by `commit` (given the whole group, it returns
    /// one answer per item, in order), or waits for the commit an earlier caller started with it.
    /// `None` only if the commit task itself failed (a panic): the item's fate is then unknown.
    pub async fn submit<F, Fut>(&self, item: T, commit: F) -> Option<R>
    where
        F: FnOnce(Vec<T>) -> Fut,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.waiting().push((item, reply));
        {
            // Every caller takes one turn, and each turn takes at least one waiting item if there
            // is one: so no item is left behind when the last caller's turn ends.
            let _turn = self.committing.acquire().await;
            let group: Vec<_> = {
                let mut waiting = self.waiting();
                let oldest = waiting.len().min(self.max_group);
                waiting.drain(..oldest).collect()
            };
            if !group.is_empty() {
                let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = group.into_iter().unzip();
                let committed = commit(items);
                let task = tokio::spawn(async move {
                    for (reply, result) in replies.into_iter().zip(committed.await) {
                        let _ = reply.send(result);
                    }
                });
                let _ = task.await;
            }
        }
        answer.await.ok()
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<(T, oneshot::Sender<R>)>> {
        // The list stays consistent even if a holder panicked (pushes and takes are single steps).
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_shares_commits_and_every_caller_hears_of_its_own() {
        let group = Arc::new(GroupCommit::<usize, usize>::default());
        let commits = Arc::new(AtomicUsize::new(0));
        let committed = Arc::new(Mutex::new(Vec::new()));
        let mut callers = tokio::task::JoinSet::new();
        for n in 0..50 {
            let (group, commits, committed) = (group.clone(), commits.clone(), committed.clone());
            callers.spawn(async move {
                let check = committed.clone();
                let answer = group
                    .submit(n, move |items| async move {
                        commits.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        committed.lock().unwrap().extend(items.iter().copied());
                        items.iter().map(|i| i * 10).collect()
                    })
                    .await;
                // Answered only once the item is in a finished commit, with its own answer.
                assert!(check.lock().unwrap().contains(&n));
                assert_eq!(answer, Some(n * 10));
            });
        }
        while let Some(done) = callers.join_next().await {
            done.unwrap();
        }
        let mut all = committed.lock().unwrap().clone();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>(), "each item committed exactly once");
        assert!(commits.load(Ordering::SeqCst) < 10, "50 items in {} commits", commits.load(Ordering::SeqCst));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_groups_commit_at_once_none_larger_than_allowed() {
        let group = Arc::new(GroupCommit::<usize, usize>::new(3, 4));
        let (running, most_running, largest) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut callers = tokio::task::JoinSet::new();
        for n in 0..60 {
            let (group, running, most_running, largest) =
                (group.clone(), running.clone(), most_running.clone(), largest.clone());
            callers.spawn(async move {
                group
                    .submit(n, move |items| async move {
                        most_running.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        largest.fetch_max(items.len(), Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        items
                    })
                    .await
            });
        }
        let mut answered = Vec::new();
        while let Some(done) = callers.join_next().await {
            answered.push(done.unwrap().expect("every caller answered"));
        }
        answered.sort_unstable();
        assert_eq!(answered, (0..60).collect::<Vec<_>>());
        assert!(most_running.load(Ordering::SeqCst) > 1, "commits overlapped");
        assert!(most_running.load(Ordering::SeqCst) <= 3, "at most three at once");
        assert!(largest.load(Ordering::SeqCst) <= 4, "groups of four at most");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_goes_away_does_not_take_its_group_with_it() {
        let group = Arc::new(GroupCommit::<u8, u8>::default());
        let slow_commit = |items: Vec<u8>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            items
        };
        // The first caller starts a commit holding only its item; the second queues behind it, and
        // the first goes away while the commit runs.
        let leader = tokio::spawn({
            let group = group.clone();
            async move { group.submit(1, slow_commit).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let follower = tokio::spawn({
            let group = group.clone();
            async move { group.submit(2, slow_commit).await }
        });
        leader.abort();
        assert_eq!(follower.await.unwrap(), Some(2));
    }
}
