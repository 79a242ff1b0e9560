//! Writer -> reader round trips, and corrupt or truncated files refused
//! with errors (never a panic or a hang).

use std::collections::BTreeMap;

use super::layout::{
    u64_at, BucketHeader, Meta, PageHeader, BRANCH_PAGE, LEAF_PAGE, PAGE_HEADER_SIZE,
};
use super::trailer::{self, HashCheck, TrailerWriter};
use super::writer::Visit;
use super::*;

type Contents = BTreeMap<Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>>;

fn write_all(src: &mut InMemory) -> Vec<u8> {
    let mut out = Vec::new();
    let plan = plan(src, &WriteOptions::default()).unwrap();
    let written = plan.write(src, &mut out).unwrap();
    assert_eq!(out.len() as u64, plan.file_size());
    assert_eq!(written.bytes, plan.file_size());
    out
}

/// Every bucket's entries, read back (nested buckets would be an error here).
fn read_all<S: PageSource + Clone>(db: &Db<S>) -> Result<Contents> {
    let mut all = Contents::new();
    for name in db.buckets()? {
        let bucket = db.bucket(&name)?.expect("listed bucket opens");
        let mut c = bucket.cursor();
        let mut items = Vec::new();
        while let Some(e) = c.next()? {
            assert!(!e.is_bucket());
            items.push((e.key.to_vec(), e.value.to_vec()));
        }
        all.insert(name, items);
    }
    Ok(all)
}

fn contents(src: &InMemory) -> Contents {
    let mut src = src.clone();
    let mut all = Contents::new();
    for name in src.bucket_names().unwrap() {
        let mut items = Vec::new();
        src.scan(&name, &mut |k, v| {
            items.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        all.insert(name, items);
    }
    all
}

fn round_trip(src: &mut InMemory) -> Vec<u8> {
    let data = write_all(src);
    let db = Db::from_bytes(&data).unwrap();
    assert_eq!(read_all(&db).unwrap(), contents(src));
    data
}

/// Levels of a bucket's tree, found by following first children in the raw
/// pages (independently of the reader).
fn tree_depth(data: &[u8], bucket: &[u8]) -> usize {
    let meta = Meta::decode(&data[PAGE_HEADER_SIZE..]);
    let ps = meta.page_size as usize;
    let db = Db::from_bytes(data).unwrap();
    let mut c = db.root().cursor();
    c.seek(bucket).unwrap();
    let header = BucketHeader::decode(c.next().unwrap().unwrap().value);
    if header.root == 0 {
        return 1; // inline
    }
    let mut page = header.root as usize;
    let mut depth = 1;
    loop {
        let h = PageHeader::decode(&data[page * ps..]);
        if h.flags == LEAF_PAGE {
            return depth;
        }
        assert_eq!(h.flags, BRANCH_PAGE);
        page = u64_at(data, page * ps + PAGE_HEADER_SIZE + 8) as usize;
        depth += 1;
    }
}

/// Every page's header, walking the file page by page.
fn page_headers(data: &[u8]) -> Vec<PageHeader> {
    let ps = Meta::decode(&data[PAGE_HEADER_SIZE..]).page_size as usize;
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let h = PageHeader::decode(&data[at..]);
        at += (h.overflow as usize + 1) * ps;
        out.push(h);
    }
    out
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

/// Keys of `len` bytes that sort by `i`.
fn long_key(i: u64, len: usize) -> Vec<u8> {
    let mut k = format!("{i:010}").into_bytes();
    k.resize(len, b'.');
    k
}

#[test]
fn a_file_without_buckets_reads_back_empty() {
    let data = round_trip(&mut InMemory::new());
    let db = Db::from_bytes(&data).unwrap();
    assert!(db.buckets().unwrap().is_empty());
    assert_eq!(
        data.len(),
        4 * PAGE_SIZE as usize,
        "metas, freelist, root leaf"
    );
    assert_eq!(db.meta().pgid, 4);
}

#[test]
fn an_empty_bucket_is_listed_and_has_no_keys() {
    let mut src = InMemory::new();
    src.bucket(b"alarm");
    let data = round_trip(&mut src);
    let db = Db::from_bytes(&data).unwrap();
    assert_eq!(db.buckets().unwrap(), vec![b"alarm".to_vec()]);
    assert!(db
        .bucket(b"alarm")
        .unwrap()
        .unwrap()
        .cursor()
        .next()
        .unwrap()
        .is_none());
    assert!(db.bucket(b"missing").unwrap().is_none());
}

#[test]
fn one_key_reads_back_with_get() {
    let mut src = InMemory::new();
    src.bucket(b"meta")
        .insert(b"consistent_index".to_vec(), 7u64.to_be_bytes().to_vec());
    let data = round_trip(&mut src);
    let db = Db::from_bytes(&data).unwrap();
    let meta = db.bucket(b"meta").unwrap().unwrap();
    assert_eq!(
        meta.get(b"consistent_index").unwrap(),
        Some(7u64.to_be_bytes().to_vec())
    );
    assert_eq!(meta.get(b"term").unwrap(), None);
}

#[test]
fn many_keys_build_several_branch_levels() {
    let mut src = InMemory::new();
    let b = src.bucket(b"key");
    for i in 0..20_000 {
        b.insert(long_key(i, 300), i.to_le_bytes().to_vec());
    }
    let data = round_trip(&mut src);
    assert!(tree_depth(&data, b"key") >= 4, "a root over 3 lower levels");
}

#[test]
fn seek_finds_the_first_key_at_or_after_the_target() {
    let mut src = InMemory::new();
    let b = src.bucket(b"key");
    for i in (0..5000).map(|i| i * 2) {
        b.insert(long_key(i, 200), vec![1]);
    }
    let data = round_trip(&mut src);
    let db = Db::from_bytes(&data).unwrap();
    let bucket = db.bucket(b"key").unwrap().unwrap();
    for target in [0, 1, 2, 777, 4001, 9998] {
        let mut c = bucket.cursor();
        c.seek(&long_key(target, 200)).unwrap();
        assert_eq!(
            c.next().unwrap().unwrap().key,
            long_key(target.div_ceil(2) * 2, 200)
        );
    }
    let mut c = bucket.cursor();
    c.seek(&long_key(9999, 200)).unwrap();
    assert!(c.next().unwrap().is_none());
}

#[test]
fn big_values_round_trip_through_overflow_pages() {
    let mut src = InMemory::new();
    let b = src.bucket(b"key");
    for (i, len) in [10, 5_000, 3, 70_000, 1 << 20, 4_080, 1].iter().enumerate() {
        let value: Vec<u8> = (0..*len).map(|j| (j * 7 + i) as u8).collect();
        b.insert(key(i as u64), value);
    }
    let data = round_trip(&mut src);
    assert!(page_headers(&data).iter().any(|h| h.overflow > 0));
}

#[test]
fn keys_longer_than_a_page_round_trip_through_overflowing_branches() {
    // Two such keys do not fit in a branch page: each level must still
    // halve (bbolt's two keys per page), with overflow pages.
    let mut src = InMemory::new();
    let b = src.bucket(b"key");
    for i in 0..300 {
        b.insert(long_key(i, 20_000), vec![b'v'; (i % 3) as usize]);
    }
    b.insert(long_key(300, 32_768), b"longest".to_vec());
    let data = round_trip(&mut src);
    assert!(
        tree_depth(&data, b"key") >= 9,
        "300 leaves under 2-way branches"
    );
    assert!(page_headers(&data)
        .iter()
        .any(|h| h.flags == BRANCH_PAGE && h.overflow > 0));
}

#[test]
fn many_buckets_round_trip() {
    let mut src = InMemory::new();
    for i in 0..3000u64 {
        let b = src.bucket(&long_key(i, 40));
        for j in 0..(i % 5) * (i % 7) * (i % 11) {
            b.insert(key(j), vec![b'v'; (i % 300) as usize]);
        }
    }
    let data = round_trip(&mut src);
    assert_eq!(
        Db::from_bytes(&data).unwrap().buckets().unwrap().len(),
        3000
    );
    let depth_of_buckets = {
        // The tree of bucket names itself needs branch pages.
        let db = Db::from_bytes(&data).unwrap();
        let root = PageHeader::decode(&data[db.meta().root.root as usize * 4096..]);
        root.flags
    };
    assert_eq!(depth_of_buckets, BRANCH_PAGE);
}

#[test]
fn small_buckets_are_inline_and_large_ones_have_pages() {
    let mut src = InMemory::new();
    src.bucket(b"small").insert(b"a".to_vec(), b"1".to_vec());
    let big = src.bucket(b"big");
    for i in 0..100 {
        big.insert(key(i), vec![0; 100]);
    }
    let data = round_trip(&mut src);
    assert_eq!(tree_depth(&data, b"small"), 1);
    let db = Db::from_bytes(&data).unwrap();
    let mut c = db.root().cursor();
    c.seek(b"small").unwrap();
    assert_eq!(
        BucketHeader::decode(c.next().unwrap().unwrap().value).root,
        0
    );
    c.seek(b"big").unwrap();
    assert_ne!(
        BucketHeader::decode(c.next().unwrap().unwrap().value).root,
        0
    );
}

/// Sets the flags of the leaf element holding `key`, found in the raw
/// pages; returns where its value starts.
fn set_leaf_flags(data: &mut [u8], key: &[u8], flags: u32) -> usize {
    for h in page_headers(data).iter().filter(|h| h.flags == LEAF_PAGE) {
        let page = h.id as usize * 4096;
        for i in 0..h.count as usize {
            let el = page + PAGE_HEADER_SIZE + i * 16;
            let pos = u32::from_le_bytes(data[el + 4..el + 8].try_into().unwrap()) as usize;
            let ksize = u32::from_le_bytes(data[el + 8..el + 12].try_into().unwrap()) as usize;
            if &data[el + pos..el + pos + ksize] == key {
                data[el..el + 4].copy_from_slice(&flags.to_le_bytes());
                return el + pos + ksize;
            }
        }
    }
    panic!("no leaf element {key:?}");
}

#[test]
fn nested_buckets_inline_and_on_pages_are_read() {
    // The writer writes top-level buckets only; make two entries of "outer"
    // nested buckets by hand: one inline, one whose root is "zdata"'s page.
    let mut inline = vec![0u8; 16 + PAGE_HEADER_SIZE + 16];
    PageHeader {
        id: 0,
        flags: LEAF_PAGE,
        count: 1,
        overflow: 0,
    }
    .encode(&mut inline[16..]);
    super::layout::encode_leaf_element(&mut inline[32..], 0, 16, 2, 3);
    inline.extend_from_slice(b"ikiv1");
    let mut src = InMemory::new();
    let outer = src.bucket(b"outer");
    for i in 0..200 {
        outer.insert(key(i), vec![b'o'; 40]);
    }
    outer.insert(b"nested-inline".to_vec(), inline);
    outer.insert(b"nested-paged".to_vec(), vec![0; 16]); // root set below
    let zdata = src.bucket(b"zdata");
    for i in 0..300 {
        zdata.insert(key(i), vec![b'z'; 30]);
    }
    let mut data = write_all(&mut src);
    let zroot = {
        let db = Db::from_bytes(&data).unwrap();
        let mut c = db.root().cursor();
        c.seek(b"zdata").unwrap();
        BucketHeader::decode(c.next().unwrap().unwrap().value).root
    };
    set_leaf_flags(&mut data, b"nested-inline", 1);
    let at = set_leaf_flags(&mut data, b"nested-paged", 1);
    data[at..at + 8].copy_from_slice(&zroot.to_le_bytes());

    let db = Db::from_bytes(&data).unwrap();
    let outer = db.bucket(b"outer").unwrap().unwrap();
    let small = outer.bucket(b"nested-inline").unwrap().unwrap();
    assert_eq!(small.get(b"ik").unwrap(), Some(b"iv1".to_vec()));
    let paged = outer.bucket(b"nested-paged").unwrap().unwrap();
    let mut c = paged.cursor();
    let mut n = 0;
    while let Some(e) = c.next().unwrap() {
        assert_eq!(e.key, key(n));
        n += 1;
    }
    assert_eq!(n, 300);
    assert_eq!(
        outer.get(b"nested-inline").unwrap(),
        None,
        "get skips buckets"
    );
    let err = outer.bucket(&key(3)).unwrap_err().to_string();
    assert!(err.contains("is a key, not a bucket"), "{err}");
}

#[test]
fn pages_are_filled_to_the_fill_percent() {
    let mut src = InMemory::new();
    let b = src.bucket(b"key");
    for i in 0..10_000 {
        b.insert(key(i), vec![0; 100]);
    }
    let data = write_all(&mut src);
    let leaves: Vec<_> = page_headers(&data)
        .into_iter()
        .filter(|h| h.flags == LEAF_PAGE && h.id > 3) // not the bucket list
        .collect();
    // 128-byte elements: 28 fit under 90% of 4096 (16 + 28 * 128 = 3600).
    assert!(leaves[..leaves.len() - 1].iter().all(|h| h.count == 28));
    assert_eq!(leaves.len(), 10_000usize.div_ceil(28));
}

#[test]
fn the_writer_refuses_keys_out_of_order() {
    struct Unsorted;
    impl Source for Unsorted {
        fn bucket_names(&mut self) -> Result<Vec<Vec<u8>>> {
            Ok(vec![b"key".to_vec()])
        }
        fn scan(&mut self, _: &[u8], visit: &mut Visit<'_>) -> Result<()> {
            visit(b"b", b"")?;
            visit(b"a", b"")
        }
    }
    let err = write(&mut Unsorted, Vec::new(), &WriteOptions::default()).unwrap_err();
    assert!(err.to_string().contains("strictly increasing"), "{err}");
}

#[test]
fn the_writer_refuses_empty_and_oversized_keys() {
    let mut src = InMemory::new();
    src.bucket(b"key").insert(Vec::new(), b"v".to_vec());
    let err = write(&mut src, Vec::new(), &WriteOptions::default()).unwrap_err();
    assert!(err.to_string().contains("empty key"), "{err}");

    let mut src = InMemory::new();
    src.bucket(b"key").insert(vec![b'k'; 32769], b"v".to_vec());
    let err = write(&mut src, Vec::new(), &WriteOptions::default()).unwrap_err();
    assert!(err.to_string().contains("32768"), "{err}");
}

/// A source whose data grows between the two passes.
struct Growing {
    scans: usize,
}

impl Source for Growing {
    fn bucket_names(&mut self) -> Result<Vec<Vec<u8>>> {
        Ok(vec![b"key".to_vec()])
    }
    fn scan(&mut self, _: &[u8], visit: &mut Visit<'_>) -> Result<()> {
        self.scans += 1;
        let n = if self.scans == 1 { 1000 } else { 1001 };
        (0..n).try_for_each(|i| visit(&key(i), &[7; 50]))
    }
}

#[test]
fn the_writer_refuses_data_that_changed_between_passes() {
    let err = write(
        &mut Growing { scans: 0 },
        Vec::new(),
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Changed(_)), "{err}");
}

#[test]
fn a_snapshot_trailer_is_written_checked_and_stripped() {
    let mut src = InMemory::new();
    src.bucket(b"key").insert(b"k".to_vec(), b"v".to_vec());
    let mut w = TrailerWriter::new(Vec::new());
    write(&mut src, &mut w, &WriteOptions::default()).unwrap();
    let snap = w.finish().unwrap();
    assert_eq!(snap.len() % 512, 32);
    let db = trailer::strip(&snap, HashCheck::Verify).unwrap();
    assert_eq!(db.len(), snap.len() - 32);

    let mut bad = snap.clone();
    bad[5000] ^= 1;
    let err = trailer::strip(&bad, HashCheck::Verify).unwrap_err();
    assert!(err.to_string().contains("SHA-256"), "{err}");
    assert!(trailer::strip(&bad, HashCheck::Skip).is_ok());

    let err = trailer::strip(db, HashCheck::Verify).unwrap_err();
    assert!(err.to_string().contains("no SHA-256 trailer"), "{err}");
    assert_eq!(trailer::strip(db, HashCheck::Skip).unwrap().len(), db.len());
}

#[test]
fn a_snapshot_file_is_checked_before_it_is_opened() {
    let mut src = InMemory::new();
    src.bucket(b"key").insert(b"k".to_vec(), b"v".to_vec());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.db");
    let mut w = TrailerWriter::new(std::fs::File::create(&path).unwrap());
    write(&mut src, &mut w, &WriteOptions::default()).unwrap();
    w.finish().unwrap();
    let db = Db::open_snapshot(&path, HashCheck::Verify).unwrap();
    assert_eq!(read_all(&db).unwrap(), contents(&src));

    let mut data = std::fs::read(&path).unwrap();
    data[3 * 4096 + 100] ^= 0x10;
    std::fs::write(&path, &data).unwrap();
    assert!(matches!(
        Db::open_snapshot(&path, HashCheck::Verify),
        Err(Error::Trailer(_))
    ));
    assert!(Db::open_snapshot(&path, HashCheck::Skip).is_ok());
}

#[test]
fn the_meta_with_the_higher_txid_wins_and_a_broken_one_is_skipped() {
    let mut src = InMemory::new();
    src.bucket(b"key").insert(b"k".to_vec(), b"v".to_vec());
    let data = write_all(&mut src);
    let db = Db::from_bytes(&data).unwrap();
    assert_eq!((db.meta_page(), db.meta().txid), (0, 2));

    let mut broken0 = data.clone();
    broken0[PAGE_HEADER_SIZE + 20] ^= 1; // meta 0's root: checksum mismatch
    let db = Db::from_bytes(&broken0).unwrap();
    assert_eq!((db.meta_page(), db.meta().txid), (1, 1));
    assert_eq!(read_all(&db).unwrap(), contents(&src));

    let mut both = broken0;
    both[4096 + PAGE_HEADER_SIZE] ^= 1; // meta 1's magic
    let err = Db::from_bytes(&both).unwrap_err().to_string();
    assert!(
        err.contains("meta page 0: checksum") && err.contains("meta page 1"),
        "{err}"
    );
}

/// Reads everything; any outcome but a panic is acceptable to the caller.
fn try_read(data: &[u8]) -> Result<Contents> {
    read_all(&Db::from_bytes(data)?)
}

/// A file with branch levels, overflow pages and inline buckets.
fn sample() -> (InMemory, Vec<u8>) {
    let mut src = InMemory::new();
    let b = src.bucket(b"key");
    for i in 0..3000 {
        b.insert(long_key(i, 100), vec![b'x'; (i % 50) as usize]);
    }
    b.insert(long_key(5000, 100), vec![b'y'; 9000]);
    src.bucket(b"meta")
        .insert(b"term".to_vec(), vec![0, 0, 0, 1]);
    src.bucket(b"alarm");
    let data = round_trip(&mut src);
    (src, data)
}

#[test]
fn truncation_at_every_page_boundary_is_refused() {
    let (_, data) = sample();
    assert!(data.len() > 100 * 4096);
    for pages in 0..data.len() / 4096 {
        let err = try_read(&data[..pages * 4096]).unwrap_err().to_string();
        assert!(err.contains("offset"), "{pages} pages: {err}");
    }
    for cut in [1, 79, 80, 4095, 4096 + 80, 8191] {
        assert!(try_read(&data[..cut]).is_err());
    }
}

#[test]
fn random_bit_flips_never_panic_and_structural_ones_are_refused() {
    let (src, data) = sample();
    let expected = contents(&src);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut refused, mut same, mut differ) = (0, 0, 0);
    for _ in 0..3000 {
        let mut bad = data.clone();
        let bit = next() % (bad.len() as u64 * 8);
        bad[(bit / 8) as usize] ^= 1 << (bit % 8);
        match try_read(&bad) {
            Err(_) => refused += 1,
            Ok(c) if c == expected => same += 1, // unused bytes, or the spare meta
            Ok(_) => differ += 1,                // a key or value byte: bbolt has no data checksum
        }
    }
    assert!(
        refused > 0 && same + differ > 0,
        "{refused} {same} {differ}"
    );

    // Flipping a bit of a page's id, type or element count breaks the tree.
    let ps = 4096;
    for (n, h) in page_headers(&data).iter().enumerate().skip(3) {
        let at = h.id as usize * ps;
        assert_eq!(at / ps, h.id as usize, "page {n}");
        for byte in [0, 8, 9] {
            let mut bad = data.clone();
            bad[at + byte] ^= 0x40;
            assert!(try_read(&bad).is_err(), "page {} byte {byte}", h.id);
        }
    }
}

/// The offset of branch element `i`'s child id on page `id`.
fn branch_child_at(id: u64, i: usize) -> usize {
    id as usize * 4096 + PAGE_HEADER_SIZE + i * 16 + 8
}

fn branch_pages(data: &[u8]) -> Vec<PageHeader> {
    page_headers(data)
        .into_iter()
        .filter(|h| h.flags == BRANCH_PAGE)
        .collect()
}

#[test]
fn a_branch_that_points_at_itself_or_an_ancestor_is_refused() {
    let (_, data) = sample();
    let branches = branch_pages(&data);
    let root = branches.last().unwrap().id; // written last
    for target in [root, branches[0].id] {
        let mut bad = data.clone();
        let at = branch_child_at(branches[0].id, 1);
        bad[at..at + 8].copy_from_slice(&target.to_le_bytes());
        let err = try_read(&bad).unwrap_err().to_string();
        assert!(err.contains(&format!("page {}", branches[0].id)), "{err}");
    }
}

#[test]
fn two_branch_elements_sharing_a_child_are_refused() {
    let (_, data) = sample();
    let b = branch_pages(&data)[0];
    let mut bad = data.clone();
    let first = u64_at(&data, branch_child_at(b.id, 0));
    let at = branch_child_at(b.id, 1);
    bad[at..at + 8].copy_from_slice(&first.to_le_bytes());
    let err = try_read(&bad).unwrap_err().to_string();
    assert!(err.contains("sort after"), "{err}");
}

#[test]
fn references_outside_the_file_and_wrong_page_types_are_refused() {
    let (_, data) = sample();
    let b = branch_pages(&data)[0];
    for target in [0u64, 1, 2, 1 << 40, u64::MAX] {
        let mut bad = data.clone();
        let at = branch_child_at(b.id, 0);
        bad[at..at + 8].copy_from_slice(&target.to_le_bytes());
        assert!(try_read(&bad).is_err(), "child {target}");
    }
    // An element pointing past its page.
    let mut bad = data.clone();
    let pos_at = b.id as usize * 4096 + PAGE_HEADER_SIZE;
    bad[pos_at..pos_at + 4].copy_from_slice(&5000u32.to_le_bytes());
    let err = try_read(&bad).unwrap_err().to_string();
    assert!(err.contains("past the page"), "{err}");
}

#[test]
fn overflow_counts_past_the_high_water_mark_are_refused() {
    let (_, data) = sample();
    let leaf = page_headers(&data)
        .into_iter()
        .find(|h| h.flags == LEAF_PAGE && h.id > 3)
        .unwrap();
    let mut bad = data.clone();
    let at = leaf.id as usize * 4096 + 12;
    bad[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = try_read(&bad).unwrap_err().to_string();
    assert!(err.contains("overflow"), "{err}");
}

#[test]
fn garbage_is_not_a_database() {
    for data in [
        vec![],
        vec![0u8; 100],
        vec![0u8; 64 << 10],
        vec![0xffu8; 20_000],
    ] {
        let err = Db::from_bytes(&data).unwrap_err().to_string();
        assert!(err.contains("not a bbolt database"), "{err}");
    }
}

#[test]
#[ignore = "benchmark: cargo test --release bbolt::tests::bench -- --ignored --nocapture"]
fn bench_one_million_keys_of_512_bytes() {
    use std::time::Instant;

    /// 1M revision-like keys with 512-byte values, generated on the fly.
    struct Synthetic;
    impl Source for Synthetic {
        fn bucket_names(&mut self) -> Result<Vec<Vec<u8>>> {
            Ok(vec![b"key".to_vec()])
        }
        fn scan(&mut self, _: &[u8], visit: &mut Visit<'_>) -> Result<()> {
            let mut value = [0u8; 512];
            for i in 0..1_000_000u64 {
                let mut k = [0u8; 17];
                k[..8].copy_from_slice(&i.to_be_bytes());
                k[8] = b'_';
                value[..8].copy_from_slice(&i.to_le_bytes());
                visit(&k, &value)?;
            }
            Ok(())
        }
    }
    fn peak_rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
    let data_mb = 1_000_000.0 * (17.0 + 512.0) / 1e6;
    let rss0 = peak_rss_kib();

    let t = Instant::now();
    let written = write(&mut Synthetic, std::io::sink(), &WriteOptions::default()).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "write to /dev/null: {:.0} MB of keys+values, file {:.0} MB, {secs:.2}s, {:.0} MB/s (data), peak RSS {} KiB (was {rss0})",
        data_mb,
        written.bytes as f64 / 1e6,
        data_mb / secs,
        peak_rss_kib()
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.db");
    let t = Instant::now();
    let f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    write(&mut Synthetic, f, &WriteOptions::default()).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "write to a file: {secs:.2}s, {:.0} MB/s, peak RSS {} KiB",
        data_mb / secs,
        peak_rss_kib()
    );

    let t = Instant::now();
    let db = Db::open(&path).unwrap();
    let mut c = db.bucket(b"key").unwrap().unwrap().cursor();
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Some(e) = c.next().unwrap() {
        n += 1;
        bytes += (e.key.len() + e.value.len()) as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(n, 1_000_000);
    println!(
        "read: {n} keys, {:.0} MB in {secs:.2}s, {:.0} MB/s, peak RSS {} KiB",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        peak_rss_kib()
    );
}
