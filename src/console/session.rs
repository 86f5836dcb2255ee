//! Console sign-in without server-side state (so any replica serves any request): the session is
//! a cookie holding its expiry and a random id, signed with a key derived from the admin token
//! (changing the token ends every session). Forms carry a CSRF token derived from the session, and
//! failed sign-ins are limited.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

pub const COOKIE: &str = "tanyi_console";
/// How long a sign-in lasts.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Failed sign-ins accepted per window, from everyone together (behind a load balancer the peer
/// address says nothing about the client).
const FAILURES_PER_WINDOW: usize = 10;
const WINDOW: Duration = Duration::from_secs(60);

pub struct Sessions {
    key: [u8; 32],
    failures: Mutex<VecDeque<Instant>>,
}

/// A signed-in session, as its cookie proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    id: String,
}

impl Session {
    /// Enough of the session's id to tell sessions apart in a log, not to forge one (the id is
    /// useless without the signature anyway).
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(8)]
    }
}

impl Sessions {
    pub fn new(admin_token: &Secret) -> Sessions {
        let mut mac = Hmac::<Sha256>::new_from_slice(admin_token.expose().as_bytes()).expect("any key length");
        mac.update(b"tanyi-relay console session key");
        Sessions { key: mac.finalize().into_bytes().into(), failures: Mutex::new(VecDeque::new()) }
    }

    fn sign(&self, text: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A new session's cookie value, valid until `now + LIFETIME` (seconds since the epoch).
    pub fn issue(&self, now: u64) -> String {
        let mut random = [0u8; 16];
        getrandom::getrandom(&mut random).expect("the operating system's random source works");
        let body = format!("v1.{}.{}", now + LIFETIME.as_secs(), hex::encode(random));
        let signature = self.sign(&body);
        format!("{body}.{signature}")
    }

    /// The session a cookie value proves, if it is ours, intact and not expired.
    pub fn verify(&self, cookie: &str, now: u64) -> Option<Session> {
        let (body, signature) = cookie.rsplit_once('.')?;
        let expected = self.sign(body);
        if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            return None;
        }
        let mut parts = body.split('.');
        let (version, expiry, id) = (parts.next()?, parts.next()?, parts.next()?);
        let expiry: u64 = expiry.parse().ok()?;
        (version == "v1" && expiry > now).then(|| Session { id: id.to_owned() })
    }

    /// The CSRF token of a session's forms.
    pub fn csrf_token(&self, session: &Session) -> String {
        self.sign(&format!("csrf.{}", session.id))
    }

    pub fn csrf_matches(&self, session: &Session, given: &str) -> bool {
        constant_time_eq(self.csrf_token(session).as_bytes(), given.as_bytes())
    }

    /// Whether another sign-in attempt may be checked now.
    pub fn may_try(&self, now: Instant) -> bool {
        let mut failures = self.failures.lock().expect("the lock is never poisoned: no panic while held");
        while failures.front().is_some_and(|&at| now.duration_since(at) >= WINDOW) {
            failures.pop_front();
        }
        failures.len() < FAILURES_PER_WINDOW
    }

    pub fn failed(&self, now: Instant) {
        let mut failures = self.failures.lock().expect("the lock is never poisoned: no panic while held");
        failures.push_back(now);
        // Bounded: older entries beyond the limit carry no information.
        while failures.len() > FAILURES_PER_WINDOW {
            failures.pop_front();
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(token: &str) -> Sessions {
        Sessions::new(&Secret::new(token.to_owned()))
    }

    #[test]
    fn a_cookie_is_valid_until_it_expires_and_only_with_the_token_it_was_made_with() {
        let ours = sessions("a-long-admin-token-number-one");
        let cookie = ours.issue(1_000);
        assert!(ours.verify(&cookie, 1_000).is_some());
        assert!(ours.verify(&cookie, 1_000 + LIFETIME.as_secs()).is_none(), "expired");
        assert!(sessions("another-admin-token-entirely").verify(&cookie, 1_000).is_none());
        let tampered = cookie.replacen("v1.", "v1.9", 1);
        assert!(ours.verify(&tampered, 1_000).is_none());
        assert!(ours.verify("garbage", 1_000).is_none());
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let ours = sessions("a-long-admin-token-number-one");
        let one = ours.verify(&ours.issue(0), 1).unwrap();
        let two = ours.verify(&ours.issue(0), 1).unwrap();
        assert!(ours.csrf_matches(&one, &ours.csrf_token(&one)));
        assert!(!ours.csrf_matches(&two, &ours.csrf_token(&one)));
        assert!(!ours.csrf_matches(&one, ""));
    }

    #[test]
    fn failed_sign_ins_are_limited_per_window() {
        let ours = sessions("a-long-admin-token-number-one");
        let start = Instant::now();
        for _ in 0..FAILURES_PER_WINDOW {
            assert!(ours.may_try(start));
            ours.failed(start);
        }
        assert!(!ours.may_try(start + Duration::from_secs(1)));
        assert!(ours.may_try(start + WINDOW));
    }
}
