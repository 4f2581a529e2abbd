//! The login use case, shared by the PAM module and (later) the REST API:
//! check a password with lockout and audit, check whether an account may be
//! used, change a password.

use serde_json::json;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::hashing::{Hasher, PasswordError, StoredHash};
use crate::model::history::Counter;
use crate::model::lockout::{FailureState, LockoutPolicy};
use crate::model::password::{HashParams, PasswordPolicy, PolicyViolation};
use crate::model::time::Timestamp;
use crate::model::user::{AccountState, User};
use crate::model::username::Username;
use crate::store::{Store, StoreError, Tx};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
}

/// What a password check found. Callers must not tell the client which
/// failure it was; the variants exist for the log.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginOutcome {
    Success(Box<User>),
    /// Not in the database (or not even a valid name).
    UnknownUser,
    /// Wrong password; counted. `locked_now` when this failure locked the account.
    WrongPassword {
        failures: u32,
        locked_now: bool,
    },
    /// Locked by earlier failures; the password was not accepted, right or not.
    Locked,
    /// Disabled by an admin.
    Inactive,
}

/// What a password change came to.
#[derive(Debug, Clone, PartialEq)]
pub enum PasswordChange {
    Changed,
    /// The old password did not check out (see the inner outcome for why).
    Denied(LoginOutcome),
    /// The new password breaks the policy; the message is for the user.
    Refused(PolicyViolation),
}

/// Who set a password without the old one, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetBy {
    /// Root through PAM (`passwd NAME`, `chpasswd`).
    Root,
    /// An administrator through `slicectl` or the API.
    Admin,
}

impl SetBy {
    fn as_str(self) -> &'static str {
        match self {
            SetBy::Root => "root",
            SetBy::Admin => "admin",
        }
    }
}

/// More writes for a successful login, inside its transaction.
type AlsoOnSuccess<'f> = dyn Fn(&Tx<'_>, &User) -> Result<(), StoreError> + 'f;

/// The login path: one per PAM hook call or API request.
pub struct Authenticator<'a> {
    store: &'a mut Store,
    hasher: Hasher,
    lockout: LockoutPolicy,
    config: &'a Config,
    /// Who acts, for the audit log: `pam:sshd`, `root`, ...
    actor: String,
}

impl<'a> Authenticator<'a> {
    pub fn new(
        store: &'a mut Store,
        config: &'a Config,
        actor: impl Into<String>,
    ) -> Result<Self, AuthError> {
        Ok(Self {
            store,
            hasher: Hasher::new(config.hash)?,
            lockout: config.lockout,
            config,
            actor: actor.into(),
        })
    }

    /// Checks `password` for `name` at `now`. A success records the login and
    /// clears the failure count; a wrong password is counted and may lock the
    /// account. Every path costs one argon2 run, so timing tells nothing.
    pub fn login(
        &mut self,
        name: &str,
        password: &[u8],
        now: Timestamp,
    ) -> Result<LoginOutcome, AuthError> {
        Ok(self.check(name, password, now, true, None)?.0)
    }

    /// Like [`Authenticator::login`] but without recording a login: for
    /// confirming the current password before a change.
    pub fn confirm(
        &mut self,
        name: &str,
        password: &[u8],
        now: Timestamp,
    ) -> Result<LoginOutcome, AuthError> {
        Ok(self.check(name, password, now, false, None)?.0)
    }

    /// `also`: more writes for a successful login, in the same transaction
    /// as its bookkeeping (one write, one WAL append, per API login).
    /// Returns the outcome and whether the password matched (which only a
    /// front door that may say why a right password was refused uses).
    fn check(
        &mut self,
        name: &str,
        password: &[u8],
        now: Timestamp,
        is_login: bool,
        also: Option<&AlsoOnSuccess<'_>>,
    ) -> Result<(LoginOutcome, bool), AuthError> {
        let found = match Username::parse(name) {
            Ok(_) => self.store.credentials(name)?,
            Err(_) => None,
        };
        let Some((user, hash)) = found else {
            // Cost what checking a real user of this database costs: the
            // parameters of one stored hash, picked by the name (see
            // `Store::sample_hash`), so unknown names follow the user base's
            // own mix of costs, also right after a cost change.
            let params = self
                .store
                .sample_hash(name)?
                .and_then(|phc| StoredHash::parse(&phc).ok())
                .map_or(self.hasher.params(), |stored| stored.params());
            self.hasher.dummy_verify_with(params);
            return Ok((LoginOutcome::UnknownUser, false));
        };
        let matches = self.hasher.verify(password, &hash)?;
        if !user.active || user.pending.is_some() {
            return Ok((LoginOutcome::Inactive, matches));
        }
        if self.lockout.is_locked(&user.failures, now) {
            return Ok((LoginOutcome::Locked, matches));
        }
        // A successful login moves an old hash to the configured cost, so a
        // cost change reaches the whole user base as people log in. Hashed
        // before the write transaction, which must stay short.
        let rehashed = if matches && is_login {
            self.rehash(password, &hash)
        } else {
            None
        };

        // The bookkeeping re-reads the row inside the write transaction: other
        // logins may have counted failures (or locked it) since we looked.
        let lockout = self.lockout;
        let actor = self.actor.as_str();
        self.store
            .write(|tx| {
                let (current_failures, current_hash) = tx
                    .login_state(name)?
                    .ok_or_else(|| StoreError::UserNotFound(name.into()))?;
                if lockout.is_locked(&current_failures, now) {
                    return Ok(LoginOutcome::Locked);
                }
                if matches {
                    if is_login {
                        tx.record_login(name, now)?;
                        tx.count(Counter::LoginSuccess)?;
                    }
                    // Only if nobody changed the password meanwhile.
                    if let Some((new_hash, from, to)) = rehashed.filter(|_| current_hash == hash) {
                        tx.replace_hash(name, &new_hash)?;
                        tx.audit(
                            now,
                            actor,
                            "user.rehash",
                            name,
                            &json!({"from": from.to_string(), "to": to.to_string()}),
                        )?;
                    }
                    // The record as it is now: what was read, with this login.
                    let mut current = user;
                    current.failures = current_failures;
                    if is_login {
                        current.failures = FailureState::default();
                        current.last_login = Some(now);
                    }
                    if let Some(also) = also {
                        also(tx, &current)?;
                    }
                    return Ok(LoginOutcome::Success(Box::new(current)));
                }
                let after = lockout.after_failure(&current_failures, now);
                tx.set_failures(name, &after, now)?;
                let locked_now = LockoutPolicy::newly_locked(&current_failures, &after);
                tx.count(Counter::LoginFailure)?;
                if locked_now {
                    tx.count(Counter::Lockout)?;
                    tx.audit(
                        now,
                        actor,
                        "user.lock",
                        name,
                        &json!({"failures": after.count}),
                    )?;
                }
                Ok(LoginOutcome::WrongPassword {
                    failures: after.count,
                    locked_now,
                })
            })
            .map(|outcome| (outcome, matches))
    }

    /// A new hash of `password` at the configured cost when `hash` was made
    /// with another; `None` when it is current or cannot be remade now (the
    /// login goes on with the old hash).
    fn rehash(&self, password: &[u8], hash: &str) -> Option<(String, HashParams, HashParams)> {
        let from = StoredHash::parse(hash).ok()?.params();
        let to = self.hasher.params();
        if from == to {
            return None;
        }
        let text = std::str::from_utf8(password).ok()?;
        Some((self.hasher.hash(text).ok()?, from, to))
    }

    /// Whether `name` may use the account at `now` (PAM's account stage):
    /// `None` for a user who is not in the database.
    pub fn account_state(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<Option<AccountState>, AuthError> {
        if Username::parse(name).is_err() {
            return Ok(None);
        }
        Ok(self
            .store
            .user(name)?
            .map(|user| user.state(&self.lockout, now)))
    }

    /// An administrator sets `name`'s password without the old one (root's
    /// `passwd NAME` through PAM, `slicectl user passwd`, the API): the
    /// same policy, hash and audit as a user's own change; `by` is recorded.
    pub fn set_password(
        &mut self,
        name: &str,
        new: &[u8],
        now: Timestamp,
        by: SetBy,
    ) -> Result<PasswordChange, AuthError> {
        self.store_new_password(name, new, now, by.as_str())
    }

    /// The user's own password change: the old password must check out (a
    /// wrong one counts as a failed login), the new one must pass the policy.
    pub fn change_password(
        &mut self,
        name: &str,
        old: &[u8],
        new: &[u8],
        now: Timestamp,
    ) -> Result<PasswordChange, AuthError> {
        match self.confirm(name, old, now)? {
            LoginOutcome::Success(_) => {}
            denied => return Ok(PasswordChange::Denied(denied)),
        }
        if old == new {
            return Ok(PasswordChange::Refused(PolicyViolation::Unchanged));
        }
        self.store_new_password(name, new, now, "self")
    }

    /// The policy check, the hash and the audited write that every password
    /// change ends with; `by` says who set it, for the audit log.
    fn store_new_password(
        &mut self,
        name: &str,
        new: &[u8],
        now: Timestamp,
        by: &str,
    ) -> Result<PasswordChange, AuthError> {
        let hash = match hash_new_password(&self.hasher, &self.config.password, new)? {
            Ok(hash) => hash,
            Err(violation) => return Ok(PasswordChange::Refused(violation)),
        };
        let actor = self.actor.as_str();
        self.store.write(|tx| {
            tx.set_password_hash(name, &hash, now)?;
            tx.audit(now, actor, "user.passwd", name, &json!({ "by": by }))
        })?;
        Ok(PasswordChange::Changed)
    }
}

/// The policy check and the hash every new password goes through (a
/// change, an admin's set, a new user); the inner error is for the person
/// who chose it.
pub fn hash_new_password(
    hasher: &Hasher,
    policy: &PasswordPolicy,
    new: &[u8],
) -> Result<Result<String, PolicyViolation>, PasswordError> {
    match policy.check(new) {
        Ok(text) => hasher.hash(text).map(Ok),
        Err(violation) => Ok(Err(violation)),
    }
}

/// A session of the REST API: the bearer token the client keeps (shown
/// once, stored only as its hash) and when it ends.
#[derive(Debug)]
pub struct ApiSession {
    pub token: Zeroizing<String>,
    pub user: Box<User>,
    pub expires: Timestamp,
}

/// A token is 32 random bytes, in hex.
const TOKEN_BYTES: usize = 32;

impl Authenticator<'_> {
    /// A login through the API: the same password check, lockout and audit
    /// as a PAM login (a wrong password here counts for SSH too), and only
    /// a user whose account is usable now (not expired) gets a session,
    /// valid for `ttl_secs`. Anything else is the outcome, for the log.
    pub fn open_api_session(
        &mut self,
        name: &str,
        password: &[u8],
        now: Timestamp,
        ttl_secs: i64,
    ) -> Result<Result<ApiSession, Refusal>, AuthError> {
        let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
        getrandom::fill(bytes.as_mut()).map_err(|e| PasswordError::Random(e.to_string()))?;
        let token = Zeroizing::new(hex(bytes.as_ref()));
        let hash = token_hash(&token);
        let expires = Timestamp(now.0.saturating_add(ttl_secs));
        let (lockout, actor) = (self.lockout, self.actor.clone());
        let usable = move |user: &User| user.state(&lockout, now) == AccountState::Active;
        // The session goes in with the login's own bookkeeping.
        let open = |tx: &Tx<'_>, user: &User| {
            if !usable(user) {
                return Ok(());
            }
            tx.prune_api_sessions(now)?;
            tx.insert_api_session(&hash, name, now, expires)?;
            tx.audit(
                now,
                &actor,
                "api.login",
                name,
                &json!({"expires": expires.0}),
            )
        };
        let (outcome, password_matched) = self.check(name, password, now, true, Some(&open))?;
        match outcome {
            LoginOutcome::Success(user) if usable(&user) => Ok(Ok(ApiSession {
                token,
                user,
                expires,
            })),
            // Right password, but expired (or otherwise not usable now).
            LoginOutcome::Success(_) => Ok(Err(Refusal {
                outcome: LoginOutcome::Inactive,
                password_matched,
            })),
            outcome => Ok(Err(Refusal {
                outcome,
                password_matched,
            })),
        }
    }
}

/// Why a login through the API or the portal was refused. Only where
/// `password_matched` may a front door say more than "wrong username or
/// password" (that the account is locked or disabled): whoever knows the
/// password may know that; whoever guesses learns nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub outcome: LoginOutcome,
    pub password_matched: bool,
}

/// The user a bearer token stands for: an open, unexpired session of an
/// account usable now (a disabled, locked, expired or deleted account's
/// tokens stop working at once). Anything malformed is no one.
pub fn session_user(
    store: &Store,
    lockout: &LockoutPolicy,
    token: &str,
    now: Timestamp,
) -> Result<Option<User>, StoreError> {
    if !is_token(token) {
        return Ok(None);
    }
    Ok(store
        .api_session(&token_hash(token), now)?
        .filter(|user| user.state(lockout, now) == AccountState::Active))
}

/// Logout: the session ends; false if the token had none.
pub fn close_api_session(
    store: &mut Store,
    token: &str,
    actor: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    if !is_token(token) {
        return Ok(false);
    }
    let Some(user) = store.api_session(&token_hash(token), now)? else {
        return Ok(false);
    };
    store.write(|tx| {
        let closed = tx.delete_api_session(&token_hash(token))?;
        tx.audit(now, actor, "api.logout", user.username.as_str(), &json!({}))?;
        Ok(closed)
    })
}

fn is_token(token: &str) -> bool {
    token.len() == 2 * TOKEN_BYTES && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What the database keeps of a token: its BLAKE2s-256, in hex. A token is
/// 256 random bits, so a fast hash is enough (nothing to guess).
/// The token a session's forms carry (the portal's CSRF defence): derived
/// from the session token, so it needs no storage and dies with the
/// session, and unlike the token it may appear in a page (the token is in
/// an HttpOnly cookie). Not the stored hash: another domain.
pub fn form_token(token: &str) -> String {
    use blake2::Digest;
    let mut hasher = blake2::Blake2s256::new();
    hasher.update(b"diycloud form token\0");
    hasher.update(token.as_bytes());
    hex(&hasher.finalize())
}

fn token_hash(token: &str) -> String {
    use blake2::Digest;
    hex(&blake2::Blake2s256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
