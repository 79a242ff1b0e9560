//! Authentication and role-based access control, as etcd's auth store: users
//! (bcrypt password hashes, roles), roles (key permissions), the enabled
//! flag and a revision bumped by every change. Changes arrive through Raft
//! (so every member holds the same store). Simple tokens are member-local,
//! learnt through Raft when a member authenticates someone; JWT tokens
//! ([`jwt`]) are verified by each member with its key.
//!
//! Checking happens where a request enters: the KV service in Rust, and in
//! front of the services bridged to Python (see [`policy`]).

pub mod jwt;
mod perms;
pub mod policy;
mod tokens;

use std::collections::{BTreeMap, BTreeSet};

use tonic::Status;

use crate::errors::{self, auth as err};
use crate::pb::authpb::{Permission, Role, User, UserAddOptions};
use crate::pb::internal::auth_admin_request::Request as Admin;
use crate::pb::internal::AuthState;
use jwt::JwtTokens;
pub use perms::Access;
use tokens::Tokens;

pub const ROOT: &str = "root";

/// 128 random bits as hex, from the OS.
pub fn random_token() -> String {
    use std::io::Read;
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom is readable");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who a request runs as, once its token (if any) is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Auth is off: everything is allowed.
    Anyone,
    /// Auth is on and the request carried no token.
    Nobody,
    /// A user, as of the auth store revision its token was issued at
    /// (simple tokens and certificate names: the current one).
    User { name: String, revision: u64 },
}

/// The token a request carries, as far as it can be checked without the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    Nothing,
    /// A simple token: the store knows whose it is.
    Simple(&'a str),
    /// A JWT, already verified with the member's key (signatures are the slow
    /// part, so they are checked before the state lock is taken): (user,
    /// revision), or None when the signature, algorithm or expiry is wrong.
    Jwt(Option<(String, u64)>),
}

impl<'a> Presented<'a> {
    /// `token` as the member's token kind reads it: with `jwt` (the
    /// --auth-token jwt key) every token is a JWT, as in etcd.
    pub fn read(token: Option<&'a str>, jwt: Option<&JwtTokens>) -> Presented<'a> {
        match (token, jwt) {
            (None, _) => Presented::Nothing,
            (Some(t), Some(jwt)) => Presented::Jwt(jwt.verify(t)),
            (Some(t), None) => Presented::Simple(t),
        }
    }
}

pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    tokens: Tokens,
}

impl Default for AuthStore {
    fn default() -> Self {
        // etcd's store starts at revision 1.
        AuthStore {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            tokens: Tokens::default(),
        }
    }
}

impl AuthStore {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Applies one replicated change; the error is what the client is told.
    pub fn apply(&mut self, req: &Admin) -> Result<(), Status> {
        match req {
            Admin::Enable(_) => {
                if self.enabled {
                    return Ok(());
                }
                let root = self
                    .users
                    .get(ROOT)
                    .ok_or_else(|| err(errors::ROOT_USER_NOT_EXIST))?;
                if !root.roles.iter().any(|r| r == ROOT) {
                    return Err(err(errors::ROOT_ROLE_NOT_EXIST));
                }
                self.enabled = true;
                self.tokens.clear();
                // etcd's enable does not bump the revision.
                return Ok(());
            }
            Admin::Disable(_) => {
                if !self.enabled {
                    return Ok(());
                }
                self.enabled = false;
                self.tokens.clear();
            }
            Admin::AssignToken(t) => {
                self.tokens.assign(&t.token, &t.user, t.ttl_seconds);
                return Ok(());
            }
            Admin::UserAdd(r) => {
                if r.name.is_empty() {
                    return Err(err(errors::USER_EMPTY));
                }
                if self.users.contains_key(&r.name) {
                    return Err(err(errors::USER_ALREADY_EXIST));
                }
                let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
                self.users.insert(
                    r.name.clone(),
                    User {
                        name: r.name.clone().into_bytes(),
                        password: if no_password {
                            vec![]
                        } else {
                            r.hashed_password.clone().into_bytes()
                        },
                        roles: vec![],
                        options: Some(UserAddOptions { no_password }),
                    },
                );
            }
            Admin::UserDelete(r) => {
                if self.enabled && r.name == ROOT {
                    return Err(err(errors::INVALID_AUTH_MGMT));
                }
                if self.users.remove(&r.name).is_none() {
                    return Err(err(errors::USER_NOT_FOUND));
                }
                self.tokens.forget_user(&r.name);
            }
            Admin::UserChangePassword(r) => {
                let user = self
                    .users
                    .get_mut(&r.name)
                    .ok_or_else(|| err(errors::USER_NOT_FOUND))?;
                user.password = r.hashed_password.clone().into_bytes();
                self.tokens.forget_user(&r.name);
            }
            Admin::UserGrantRole(r) => {
                if r.role != ROOT && !self.roles.contains_key(&r.role) {
                    let _ = self
                        .users
                        .get(&r.user)
                        .ok_or_else(|| err(errors::USER_NOT_FOUND))?;
                    return Err(err(errors::ROLE_NOT_FOUND));
                }
                let user = self
                    .users
                    .get_mut(&r.user)
                    .ok_or_else(|| err(errors::USER_NOT_FOUND))?;
                if user.roles.contains(&r.role) {
                    return Ok(());
                }
                user.roles.push(r.role.clone());
                user.roles.sort();
            }
            Admin::UserRevokeRole(r) => {
                if self.enabled && r.name == ROOT && r.role == ROOT {
                    return Err(err(errors::INVALID_AUTH_MGMT));
                }
                let user = self
                    .users
                    .get_mut(&r.name)
                    .ok_or_else(|| err(errors::USER_NOT_FOUND))?;
                let before = user.roles.len();
                user.roles.retain(|role| role != &r.role);
                if user.roles.len() == before {
                    return Err(err(errors::ROLE_NOT_GRANTED));
                }
            }
            Admin::RoleAdd(r) => {
                if r.name.is_empty() {
                    return Err(err(errors::ROLE_EMPTY));
                }
                if self.roles.contains_key(&r.name) {
                    return Err(err(errors::ROLE_ALREADY_EXIST));
                }
                self.roles.insert(
                    r.name.clone(),
                    Role {
                        name: r.name.clone().into_bytes(),
                        key_permission: vec![],
                    },
                );
            }
            Admin::RoleDelete(r) => {
                if self.enabled && r.role == ROOT {
                    return Err(err(errors::INVALID_AUTH_MGMT));
                }
                if self.roles.remove(&r.role).is_none() {
                    return Err(err(errors::ROLE_NOT_FOUND));
                }
                for user in self.users.values_mut() {
                    user.roles.retain(|role| role != &r.role);
                }
            }
            Admin::RoleGrantPermission(r) => {
                let perm = r
                    .perm
                    .as_ref()
                    .ok_or_else(|| err(errors::PERMISSION_NOT_GIVEN))?;
                if !valid_permission_range(&perm.key, &perm.range_end) {
                    return Err(err(errors::INVALID_AUTH_MGMT));
                }
                let role = self
                    .roles
                    .get_mut(&r.name)
                    .ok_or_else(|| err(errors::ROLE_NOT_FOUND))?;
                match role
                    .key_permission
                    .iter_mut()
                    .find(|p| p.key == perm.key && p.range_end == perm.range_end)
                {
                    Some(existing) => existing.perm_type = perm.perm_type,
                    None => {
                        role.key_permission.push(perm.clone());
                        role.key_permission
                            .sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
                    }
                }
            }
            Admin::RoleRevokePermission(r) => {
                let role = self
                    .roles
                    .get_mut(&r.role)
                    .ok_or_else(|| err(errors::ROLE_NOT_FOUND))?;
                let before = role.key_permission.len();
                role.key_permission
                    .retain(|p| !(p.key == r.key && p.range_end == r.range_end));
                if role.key_permission.len() == before {
                    return Err(err(errors::PERMISSION_NOT_GRANTED));
                }
            }
        }
        self.revision += 1;
        Ok(())
    }

    // -- queries ----------------------------------------------------------------------

    /// (password hash, no-password user) of `name`.
    pub fn credentials(&self, name: &str) -> Option<(String, bool)> {
        self.users.get(name).map(|u| {
            (
                String::from_utf8_lossy(&u.password).into_owned(),
                u.options.as_ref().is_some_and(|o| o.no_password),
            )
        })
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// Who the token a request presented (or its absence) makes the caller.
    /// A simple token's lifetime is renewed by use, as etcd's are.
    pub fn caller(&self, token: Presented<'_>) -> Result<Caller, Status> {
        if !self.enabled {
            return Ok(Caller::Anyone);
        }
        let user = match token {
            Presented::Nothing => return Ok(Caller::Nobody),
            Presented::Jwt(claims) => claims,
            Presented::Simple(t) => self
                .tokens
                .user(t)
                .filter(|user| self.users.contains_key(user))
                .map(|user| (user, self.revision)),
        };
        match user {
            Some((name, revision)) => Ok(Caller::User { name, revision }),
            None => Err(err(errors::INVALID_AUTH_TOKEN)),
        }
    }

    /// A user known by other means (a client certificate's name), as of now.
    pub fn current_user(&self, name: String) -> Caller {
        Caller::User {
            name,
            revision: self.revision,
        }
    }

    pub fn is_admin(&self, caller: &Caller) -> Result<(), Status> {
        match caller {
            Caller::Anyone => Ok(()),
            Caller::Nobody => Err(err(errors::USER_EMPTY)),
            Caller::User { name, .. } => match self.users.get(name) {
                None => Err(err(errors::USER_NOT_FOUND)),
                Some(u) if u.roles.iter().any(|r| r == ROOT) => Ok(()),
                Some(_) => Err(err(errors::PERMISSION_DENIED)),
            },
        }
    }

    /// Whether `caller` may read or write [key, range_end).
    pub fn check(
        &self,
        caller: &Caller,
        access: Access,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), Status> {
        match caller {
            Caller::Anyone => Ok(()),
            Caller::Nobody => Err(err(errors::USER_EMPTY)),
            Caller::User { name, revision } => {
                // etcd's isOpPermitted: a token from before the last auth
                // change must be renewed (clients re-authenticate on this).
                if *revision < self.revision {
                    return Err(err(errors::AUTH_OLD_REVISION));
                }
                let Some(user) = self.users.get(name) else {
                    return Err(err(errors::PERMISSION_DENIED));
                };
                if user.roles.iter().any(|r| r == ROOT) {
                    return Ok(());
                }
                let perms = user
                    .roles
                    .iter()
                    .filter_map(|r| self.roles.get(r))
                    .flat_map(|r| r.key_permission.iter());
                if perms::covers(perms, access, key, range_end) {
                    Ok(())
                } else {
                    Err(err(errors::PERMISSION_DENIED))
                }
            }
        }
    }

    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    // -- snapshots --------------------------------------------------------------------

    pub fn to_state(&self) -> AuthState {
        AuthState {
            enabled: self.enabled,
            revision: self.revision,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
        }
    }

    pub fn from_state(state: Option<AuthState>) -> AuthStore {
        let Some(s) = state else {
            return AuthStore::default();
        };
        AuthStore {
            enabled: s.enabled,
            revision: s.revision,
            users: s
                .users
                .into_iter()
                .map(|u| (String::from_utf8_lossy(&u.name).into_owned(), u))
                .collect(),
            roles: s
                .roles
                .into_iter()
                .map(|r| (String::from_utf8_lossy(&r.name).into_owned(), r))
                .collect(),
            tokens: Tokens::default(),
        }
    }
}

/// etcd's isValidPermissionRange: a range must not end before it starts.
fn valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    if key.is_empty() {
        return false;
    }
    range_end.is_empty() || range_end == [0] || key < range_end
}

/// The roles of `user`, sorted (for UserGet).
pub fn sorted_roles(user: &User) -> Vec<String> {
    let set: BTreeSet<&String> = user.roles.iter().collect();
    set.into_iter().cloned().collect()
}

/// A permission as RoleGet answers it.
pub fn permissions(role: &Role) -> Vec<Permission> {
    role.key_permission.clone()
}

#[cfg(test)]
mod tests;
