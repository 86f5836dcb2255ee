//! Group commit: work items that arrive while a commit is under way wait for it to end and then go
//! together in the next one, so that a burst costs one commit instead of one each. A caller gets
//! its answer only after the commit that holds its item, so nothing is reported as recorded before
//! it is. With no burst there is no waiting: a lone item is committed at once.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<(), String>>;

pub struct GroupCommit<T> {
    waiting: Mutex<Vec<(T, Reply)>>,
    /// Held by the caller that is committing; the others queue on it.
    committing: tokio::sync::Mutex<()>,
}

impl<T> Default for GroupCommit<T> {
    fn default() -> Self {
        Self { waiting: Mutex::new(Vec::new()), committing: tokio::sync::Mutex::new(()) }
    }
}

impl<T> GroupCommit<T> {
    /// Commits `item` with whatever else is waiting, by `commit` (called with the whole group), or
    /// learns that an earlier caller already committed it. The error is the group's, as text.
    pub async fn submit<F, Fut>(&self, item: T, commit: F) -> Result<(), String>
    where
        F: FnOnce(Vec<T>) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let (reply, mut answer) = oneshot::channel();
        self.waiting().push((item, reply));
        let _turn = self.committing.lock().await;
        if let Ok(result) = answer.try_recv() {
            return result;
        }
        let group = std::mem::take(&mut *self.waiting());
        let (items, replies): (Vec<T>, Vec<Reply>) = group.into_iter().unzip();
        let result = commit(items).await;
        for reply in replies {
            let _ = reply.send(result.clone());
        }
        // Our own item was in the group: it was waiting before we took our turn.
        answer.try_recv().unwrap_or_else(|_| Err("the commit holding this item was abandoned".into()))
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<(T, Reply)>> {
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
        let group = Arc::new(GroupCommit::<usize>::default());
        let commits = Arc::new(AtomicUsize::new(0));
        let committed = Arc::new(Mutex::new(Vec::new()));
        let mut callers = tokio::task::JoinSet::new();
        for n in 0..50 {
            let (group, commits, committed) = (group.clone(), commits.clone(), committed.clone());
            callers.spawn(async move {
                let result = group
                    .submit(n, |items| {
                        let committed = committed.clone();
                        async move {
                            commits.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            committed.lock().unwrap().extend(items);
                            Ok(())
                        }
                    })
                    .await;
                // Answered only once the item is in a finished commit.
                assert!(committed.lock().unwrap().contains(&n));
                result
            });
        }
        while let Some(result) = callers.join_next().await {
            assert_eq!(result.unwrap(), Ok(()));
        }
        let mut all = committed.lock().unwrap().clone();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>(), "each item committed exactly once");
        assert!(commits.load(Ordering::SeqCst) < 10, "50 items in {} commits", commits.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_failed_commit_is_reported_to_everyone_in_it() {
        let group = GroupCommit::<u8>::default();
        let result = group.submit(1, |_| async { Err("disk full".to_owned()) }).await;
        assert_eq!(result, Err("disk full".to_owned()));
    }
}
