//! Whether a user's permissions cover a key or a range: the union of the
//! intervals its roles grant, for reads or for writes.

use crate::pb::authpb::permission::Type as PermType;
use crate::pb::authpb::Permission;

/// What an operation needs on its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    fn granted_by(self, kind: i32) -> bool {
        kind == PermType::Readwrite as i32
            || kind
                == match self {
                    Access::Read => PermType::Read as i32,
                    Access::Write => PermType::Write as i32,
                }
    }
}

/// A half-open key interval; `end == None` is open-ended ("\0" in etcd).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

fn interval(key: &[u8], range_end: &[u8]) -> Interval {
    match range_end {
        // A single key is the interval [key, key\0).
        [] => {
            let mut end = key.to_vec();
            end.push(0);
            Interval {
                start: key.to_vec(),
                end: Some(end),
            }
        }
        [0] => Interval {
            start: key.to_vec(),
            end: None,
        },
        end => Interval {
            start: key.to_vec(),
            end: Some(end.to_vec()),
        },
    }
}

/// Whether `perms` (every permission of every role of a user) grant `access`
/// to all of [key, range_end) (or to `key` alone when range_end is empty).
pub fn covers<'a>(
    perms: impl Iterator<Item = &'a Permission>,
    access: Access,
    key: &[u8],
    range_end: &[u8],
) -> bool {
    let mut granted: Vec<Interval> = perms
        .filter(|p| access.granted_by(p.perm_type))
        .map(|p| interval(&p.key, &p.range_end))
        .collect();
    granted.sort_by(|a, b| a.start.cmp(&b.start));
    let want = interval(key, range_end);
    // Walk the sorted grants, extending how far from want.start is covered.
    let mut reached = want.start.clone();
    for g in granted {
        if g.start > reached {
            break;
        }
        match g.end {
            None => return true,
            Some(end) if end > reached => reached = end,
            Some(_) => {}
        }
    }
    match want.end {
        None => false,
        Some(end) => reached >= end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(kind: PermType, key: &str, end: &str) -> Permission {
        Permission {
            perm_type: kind as i32,
            key: key.into(),
            range_end: end.into(),
        }
    }

    #[test]
    fn a_single_key_permission_covers_only_that_key() {
        let p = [perm(PermType::Read, "a", "")];
        assert!(covers(p.iter(), Access::Read, b"a", b""));
        assert!(!covers(p.iter(), Access::Read, b"ab", b""));
        assert!(!covers(p.iter(), Access::Write, b"a", b""));
    }

    #[test]
    fn a_prefix_permission_covers_keys_and_ranges_inside_it() {
        let p = [perm(PermType::Readwrite, "dir/", "dir0")];
        assert!(covers(p.iter(), Access::Write, b"dir/x", b""));
        assert!(covers(p.iter(), Access::Read, b"dir/a", b"dir/z"));
        assert!(!covers(p.iter(), Access::Read, b"dir/a", b"e"));
        assert!(!covers(p.iter(), Access::Read, b"dir/a", b"\0"));
    }

    #[test]
    fn adjacent_grants_join_up() {
        let p = [
            perm(PermType::Read, "a", "c"),
            perm(PermType::Read, "c", "e"),
        ];
        assert!(covers(p.iter(), Access::Read, b"b", b"d"));
        let gap = [
            perm(PermType::Read, "a", "c"),
            perm(PermType::Read, "d", "e"),
        ];
        assert!(!covers(gap.iter(), Access::Read, b"b", b"d"));
    }

    #[test]
    fn an_open_ended_grant_covers_to_the_end() {
        let p = [perm(PermType::Read, "m", "\0")];
        assert!(covers(p.iter(), Access::Read, b"x", b"\0"));
        assert!(!covers(p.iter(), Access::Read, b"a", b"\0"));
    }
}
