//! Member and cluster identity, derived as etcd derives it: a member id is a
//! hash of its peer URLs and the cluster token, a cluster id a hash of the
//! sorted member ids. Same flags, same ids, across restarts.

/// One member of the cluster, as MemberList shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

fn sha1_prefix(parts: &[&[u8]]) -> u64 {
    let mut h = sha1_smol::Sha1::new();
    for p in parts {
        h.update(p);
    }
    let d = h.digest().bytes();
    u64::from_be_bytes(d[..8].try_into().expect("sha1 has 20 bytes"))
}

/// The member id for `peer_urls` in the cluster named by `token`.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let joined = urls.join("");
    let id = sha1_prefix(&[joined.as_bytes(), token.as_bytes()]);
    // Raft reserves 0 for "no node".
    if id == 0 {
        1
    } else {
        id
    }
}

/// The cluster id for a set of member ids.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    sha1_prefix(&[&bytes])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_id_is_stable_and_order_independent() {
        let a = member_id(&["http://a:1".into(), "http://b:2".into()], "tok");
        let b = member_id(&["http://b:2".into(), "http://a:1".into()], "tok");
        assert_eq!(a, b);
        assert_ne!(a, member_id(&["http://a:1".into()], "tok"));
    }

    #[test]
    fn cluster_token_changes_member_id() {
        let urls = vec!["http://127.0.0.1:2380".to_string()];
        assert_ne!(member_id(&urls, "one"), member_id(&urls, "two"));
    }
}
