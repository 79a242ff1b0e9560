use super::*;
use crate::pb::authpb::permission::Type as PermType;
use crate::pb::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
    AuthUserGrantRoleRequest,
};
use crate::pb::internal::AssignToken;

fn user_add(name: &str) -> Admin {
    Admin::UserAdd(AuthUserAddRequest {
        name: name.into(),
        hashed_password: "$2a$10$hash".into(),
        ..Default::default()
    })
}

fn grant_role(user: &str, role: &str) -> Admin {
    Admin::UserGrantRole(AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    })
}

fn enabled_store() -> AuthStore {
    let mut s = AuthStore::default();
    s.apply(&user_add("root")).unwrap();
    s.apply(&grant_role("root", "root")).unwrap();
    s.apply(&user_add("alice")).unwrap();
    s.apply(&Admin::RoleAdd(AuthRoleAddRequest { name: "r".into() }))
        .unwrap();
    s.apply(&Admin::RoleGrantPermission(
        AuthRoleGrantPermissionRequest {
            name: "r".into(),
            perm: Some(Permission {
                perm_type: PermType::Read as i32,
                key: b"pub/".to_vec(),
                range_end: b"pub0".to_vec(),
            }),
        },
    ))
    .unwrap();
    s.apply(&grant_role("alice", "r")).unwrap();
    s.apply(&Admin::Enable(AuthEnableRequest {})).unwrap();
    s.apply(&Admin::AssignToken(AssignToken {
        user: "alice".into(),
        token: "tok".into(),
        ttl_seconds: 300,
    }))
    .unwrap();
    s
}

#[test]
fn enabling_needs_a_root_user_with_the_root_role() {
    let mut s = AuthStore::default();
    let e = s.apply(&Admin::Enable(AuthEnableRequest {})).unwrap_err();
    assert_eq!(e.message(), errors::ROOT_USER_NOT_EXIST);
    s.apply(&user_add("root")).unwrap();
    let e = s.apply(&Admin::Enable(AuthEnableRequest {})).unwrap_err();
    assert_eq!(e.message(), errors::ROOT_ROLE_NOT_EXIST);
    s.apply(&grant_role("root", "root")).unwrap();
    s.apply(&Admin::Enable(AuthEnableRequest {})).unwrap();
    assert!(s.enabled());
}

#[test]
fn tokens_name_their_user_and_unknown_tokens_are_refused() {
    let s = enabled_store();
    assert_eq!(
        s.caller(Presented::Simple("tok")).unwrap(),
        s.current_user("alice".into())
    );
    assert_eq!(s.caller(Presented::Nothing).unwrap(), Caller::Nobody);
    assert_eq!(
        s.caller(Presented::Simple("nope")).unwrap_err().message(),
        errors::INVALID_AUTH_TOKEN
    );
}

#[test]
fn permissions_follow_the_users_roles() {
    let s = enabled_store();
    let alice = s.current_user("alice".into());
    assert!(s.check(&alice, Access::Read, b"pub/x", b"").is_ok());
    let denied = s.check(&alice, Access::Write, b"pub/x", b"").unwrap_err();
    assert_eq!(denied.message(), errors::PERMISSION_DENIED);
    assert_eq!(
        s.check(&Caller::Nobody, Access::Read, b"pub/x", b"")
            .unwrap_err()
            .message(),
        errors::USER_EMPTY
    );
    assert!(s.is_admin(&alice).is_err());
    assert!(s.is_admin(&s.current_user("root".into())).is_ok());
}

#[test]
fn a_caller_from_an_older_auth_revision_must_renew_its_token() {
    let mut s = enabled_store();
    let alice = s.current_user("alice".into());
    s.apply(&user_add("bob")).unwrap();
    assert_eq!(
        s.check(&alice, Access::Read, b"pub/x", b"")
            .unwrap_err()
            .message(),
        errors::AUTH_OLD_REVISION
    );
    // Admin checks do not look at the revision (etcd's IsAdminPermitted).
    let root = Caller::User {
        name: "root".into(),
        revision: 1,
    };
    assert!(s.is_admin(&root).is_ok());
}

#[test]
fn changes_bump_the_revision_and_survive_a_snapshot() {
    let s = enabled_store();
    let rev = s.revision();
    assert!(rev > 0);
    let restored = AuthStore::from_state(Some(s.to_state()));
    assert!(restored.enabled());
    assert_eq!(restored.revision(), rev);
    assert!(restored.has_role("alice", "r"));
    // Tokens are member-local: a restored store knows none.
    assert!(restored.caller(Presented::Simple("tok")).is_err());
}

#[test]
fn root_cannot_be_deleted_while_auth_is_on() {
    let mut s = enabled_store();
    let e = s
        .apply(&Admin::UserDelete(
            crate::pb::etcdserverpb::AuthUserDeleteRequest {
                name: "root".into(),
            },
        ))
        .unwrap_err();
    assert_eq!(e.message(), errors::INVALID_AUTH_MGMT);
}

#[test]
fn a_verified_jwt_names_its_user_at_the_tokens_revision() {
    let s = enabled_store();
    let verified = Presented::Jwt(Some(("alice".into(), 1)));
    assert_eq!(
        s.caller(verified).unwrap(),
        Caller::User {
            name: "alice".into(),
            revision: 1
        }
    );
    assert_eq!(
        s.caller(Presented::Jwt(None)).unwrap_err().message(),
        errors::INVALID_AUTH_TOKEN
    );
}
