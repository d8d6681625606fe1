//! Checking credentials without storing or leaking passwords.
//!
//! Users are kept only as argon2 [PHC strings] (`$argon2id$v=19$m=...`): the
//! salt and cost parameters travel with the hash, so a file of users can mix
//! hashes made with different settings and still verify.
//!
//! Two choices here matter for monitoring as much as for security:
//!
//! * **Hashing runs on a pool of its own** ([`HashingPool`]), one low-priority
//!   thread per core, never on the async runtime: one argon2 verification is
//!   milliseconds of CPU and would stall `/metrics` and every other request.
//! * **An unknown user costs a full verification.** We verify against a dummy
//!   hash, so the response time does not tell an attacker which usernames exist.
//!
//! [PHC strings]: https://github.com/P-H-C/phc-string-format/blob/master/phc-sf-spec.md

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::{SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version};

use crate::hashing::{HashingPool, Refused};

// ANCHOR: stored_hashes
/// The demo user of the original tutorial, so its requests work as is.
pub const DEMO_USERNAME: &str = "user";

/// argon2id hash of the demo password `pass` (argon2 crate defaults:
/// m=19456 KiB, t=2, p=1). Only this hash is stored, never the password.
const DEMO_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$Tpw1LdhjBprkh4EeUdlhtQ$+AtZORZRW84fga0c6de9BsoeEF5rqvtbN6oADpc7HWM";

/// Hash of a random password nobody knows, with the same parameters as the
/// demo hash: an unknown username is checked against it so that it costs as
/// much as a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$8xd8Acy0yESDDb/Rh+9L3A$lzRV/Cf6I/F8CCsP5YWNMJmi0sQrplY38iMTPeRDu+A";
// ANCHOR_END: stored_hashes

/// Why a user file could not be loaded. Messages name the line, never its content.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// A line without the `username:hash` shape.
    #[error("line {line}: expected `username:argon2-phc-hash`")]
    Malformed {
        /// 1-based line number.
        line: usize,
    },
    /// The hash part is not an argon2 PHC string with a salt and a hash.
    #[error("line {line}: the hash is not an argon2 PHC string: {reason}")]
    BadHash {
        /// 1-based line number.
        line: usize,
        /// What was wrong with it.
        reason: String,
    },
    /// The same username twice.
    #[error("line {line}: duplicate username")]
    Duplicate {
        /// 1-based line number.
        line: usize,
    },
}

/// Why a verification gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFailed {
    /// The server is too busy: the verification would have waited longer than
    /// allowed for a hashing thread (load shedding).
    #[error("too busy to verify: retry after {retry_after:?}")]
    Busy {
        /// About when the queue ahead will have drained.
        retry_after: std::time::Duration,
    },
    /// The verification itself failed (it panicked), so no answer is known.
    #[error("password verification did not complete")]
    Failed,
}

// ANCHOR: user_store
/// Known users and the means to check their passwords.
#[derive(Debug)]
pub struct UserStore {
    users: HashMap<String, String>,
    hashing: HashingPool,
    verifications: AtomicU64,
}
// ANCHOR_END: user_store

impl UserStore {
    /// A store with no users at all.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            users: HashMap::new(),
            hashing: HashingPool::per_core(),
            verifications: AtomicU64::new(0),
        }
    }

    /// A store with only the demo user `user` / `pass`.
    #[must_use]
    pub fn with_demo_user() -> Self {
        let mut store = Self::empty();
        store
            .users
            .insert(DEMO_USERNAME.to_owned(), DEMO_PASSWORD_HASH.to_owned());
        store
    }

    /// Adds the users of a `username:phc-hash` file. Blank lines and lines
    /// starting with `#` are skipped.
    pub fn add_users_from(&mut self, text: &str) -> Result<(), UsersError> {
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let entry = raw.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let (name, hash) = entry
                .split_once(':')
                .filter(|(name, hash)| !name.is_empty() && !hash.is_empty())
                .ok_or(UsersError::Malformed { line })?;
            check_phc(hash).map_err(|reason| UsersError::BadHash { line, reason })?;
            if self
                .users
                .insert(name.to_owned(), hash.to_owned())
                .is_some()
            {
                return Err(UsersError::Duplicate { line });
            }
        }
        Ok(())
    }

    /// Number of known users.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the store has no users (every login will fail).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The pool the verifications run on.
    #[must_use]
    pub fn hashing(&self) -> &HashingPool {
        &self.hashing
    }

    /// How many argon2 verifications have run to the end (a match or a computed
    /// mismatch). Tests use it to prove that an unknown user costs a verification,
    /// without measuring time. (For tests: the `testing` feature.)
    #[cfg(any(test, feature = "testing"))]
    #[must_use]
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    // ANCHOR: verify
    /// Checks a username and password. Runs exactly one argon2 verification on
    /// the hashing pool, whether or not the user exists, unless it would wait
    /// longer than `max_wait` for a hashing thread.
    pub async fn verify(
        self: &std::sync::Arc<Self>,
        username: &str,
        password: String,
        max_wait: std::time::Duration,
    ) -> Result<bool, VerifyFailed> {
        let known = self.users.get(username).cloned();
        let store = std::sync::Arc::clone(self);
        let job = move || {
            let hash = known.as_deref().unwrap_or(DUMMY_HASH);
            let matches = store.check(hash, &password);
            matches && known.is_some()
        };
        self.hashing
            .run(job, max_wait)
            .await
            .map_err(|refused| match refused {
                Refused::Shed { retry_after } => VerifyFailed::Busy { retry_after },
                Refused::Failed => VerifyFailed::Failed,
            })
    }
    // ANCHOR_END: verify

    fn check(&self, phc: &str, password: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let outcome = verify_reusing_memory(&parsed, password.as_bytes());
        // Counted only when argon2 actually ran: it matched, or it computed a hash
        // that did not. A hash that fails to parse, has no hash part or has unusable
        // parameters costs nothing, and must not look as if it did.
        let computed = parsed.hash.is_some()
            && matches!(
                outcome,
                Ok(()) | Err(argon2::password_hash::Error::Password)
            );
        if computed {
            self.verifications.fetch_add(1, Ordering::Relaxed);
        }
        outcome.is_ok()
    }
}

// ANCHOR: memory
thread_local! {
    /// The working memory of argon2 on this hashing thread, kept from one
    /// verification to the next.
    static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `PasswordVerifier::verify_password`, with argon2's working memory (19 MiB
/// with the default parameters) allocated once per hashing thread instead of
/// once per verification.
///
/// Allocated and freed by every verification, the blocks are too large to
/// come back from the allocator's caches and too small to go back to the
/// system at once: glibc kept about 130 MiB of them after a login flood. Kept
/// per thread, the memory for hashing is the threads times one verification's
/// worth, always, whatever the traffic.
fn verify_reusing_memory(
    hash: &PasswordHash<'_>,
    password: &[u8],
) -> Result<(), argon2::password_hash::Error> {
    use argon2::password_hash::{Error, Output};

    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Err(Error::Password);
    };
    let params = Params::try_from(hash)?;
    let algorithm = Algorithm::try_from(hash.algorithm)?;
    let version = hash
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let mut salt_buffer = [0_u8; 64];
    let salt = salt.decode_b64(&mut salt_buffer)?;
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let computed = MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        Output::init_with(expected.len(), |out| {
            argon2
                .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
                .map_err(Error::from)
        })
    })?;
    // `Output`'s equality takes the same time wherever the first difference is.
    if computed == *expected {
        Ok(())
    } else {
        Err(Error::Password)
    }
}
// ANCHOR_END: memory

/// Accepts only complete argon2 PHC strings: the algorithm, valid parameters,
/// a salt and a hash. Anything less would fail every login later, silently.
fn check_phc(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|error| error.to_string())?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!("algorithm `{}` is not argon2", parsed.algorithm));
    }
    argon2::Params::try_from(&parsed).map_err(|error| error.to_string())?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("it has no salt or no hash part".to_owned());
    }
    Ok(())
}

/// Hashes a password into a PHC string with argon2id and a random salt, for
/// a users file line (`cargo run --example hash_password`).
#[must_use]
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 default parameters are valid")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything about a PHC string that decides what verifying it costs.
    fn cost(phc: &str) -> (String, Option<u32>, argon2::Params, usize, usize) {
        let parsed = PasswordHash::new(phc).expect("a PHC string");
        let params = argon2::Params::try_from(&parsed).expect("argon2 parameters");
        (
            parsed.algorithm.to_string(),
            parsed.version,
            params,
            parsed.salt.expect("a salt").len(),
            parsed.hash.expect("a hash").len(),
        )
    }

    #[test]
    fn the_dummy_hash_costs_exactly_what_a_real_users_hash_costs() {
        let fresh = hash_password("any password");
        assert_eq!(
            cost(DUMMY_HASH),
            cost(&fresh),
            "the dummy hash against a new user's"
        );
        assert_eq!(
            cost(DUMMY_HASH),
            cost(DEMO_PASSWORD_HASH),
            "against the demo user's"
        );
    }

    #[test]
    fn reusing_the_memory_verifies_exactly_as_the_argon2_crate_does() {
        use argon2::PasswordVerifier as _;
        let small = argon2::Params::new(64, 1, 1, None).unwrap();
        let hashes = [
            DEMO_PASSWORD_HASH.to_owned(),
            DUMMY_HASH.to_owned(),
            hash_password("correct horse"),
            // Smaller parameters, then the default ones again: the buffer serves both.
            Argon2::new(Algorithm::Argon2id, Version::V0x13, small)
                .hash_password(b"tiny", &SaltString::generate(&mut OsRng))
                .unwrap()
                .to_string(),
        ];
        for phc in &hashes {
            let parsed = PasswordHash::new(phc).unwrap();
            for password in ["pass", "correct horse", "tiny", "wrong", ""] {
                let ours = verify_reusing_memory(&parsed, password.as_bytes());
                let theirs = Argon2::default().verify_password(password.as_bytes(), &parsed);
                assert_eq!(ours, theirs, "{phc} with {password:?}");
            }
        }
        assert!(
            verify_reusing_memory(&PasswordHash::new(DEMO_PASSWORD_HASH).unwrap(), b"pass").is_ok()
        );
    }

    #[test]
    fn a_verification_against_the_dummy_hash_runs_argon2_to_the_end() {
        let store = UserStore::empty();
        assert!(!store.check(DUMMY_HASH, "pass"));
        assert_eq!(store.verifications(), 1);
        assert!(!store.check("$argon2id$v=19$m=19456,t=2,p=1$truncated", "pass"));
        assert_eq!(
            store.verifications(),
            1,
            "an unparsable hash is not a verification"
        );
    }
}
