//! A bulk writer of bbolt files, streamed in page order.
//!
//! bbolt's meta pages come first in the file and hold what is known last
//! (the root page and the page count), and a snapshot stream cannot seek
//! back. So writing takes two passes over the data: [`plan`] reads every
//! bucket once and lays the pages out from key and value sizes alone,
//! keeping only each page's first key (branch pages need them); then
//! [`Plan::write`] reads every bucket again and emits each page as soon as
//! it is full. The second pass must see the same data: the writer checks it
//! does (page by page) and fails with [`Error::Changed`] otherwise, so the
//! caller should run both passes over one consistent read.
//!
//! The file: meta pages 0 and 1, an empty freelist at page 2, the tree of
//! top-level buckets, then each bucket's tree (leaves in key order, then each
//! branch level, the root last). A bucket whose single leaf fits in a
//! quarter page is stored inline in its entry, as bbolt stores it.
//!
//! Pages are filled to 90% by default, as etcd fills them: its defragment
//! and its sequential puts (the key bucket, appended by revision) both set
//! bbolt's fill percent to 0.9. Full pages would make the first insert into
//! any of them split it; bbolt's 0.5 default is meant for random inserts and
//! would make the file about twice the data.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::layout::{
    encode_branch_element, encode_leaf_element, BucketHeader, Meta, PageHeader,
    BRANCH_ELEMENT_SIZE, BRANCH_PAGE, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, FREELIST_PAGE,
    LEAF_ELEMENT_SIZE, LEAF_PAGE, MAX_KEY_SIZE, MAX_VALUE_SIZE, META_PAGE, PAGE_HEADER_SIZE,
};
use super::trailer::{TrailerWriter, TRAILER_LEN};
use super::{Error, Result, PAGE_SIZE};

/// The first page after the meta pages and the freelist.
const FIRST_TREE_PAGE: u64 = 3;

/// How the file is written.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// How full pages are packed, as bbolt's `FillPercent` (0.1 to 1.0).
    pub fill_percent: f64,
    /// The transaction id of meta page 0; meta page 1 gets one less, as in
    /// files bbolt's `Tx.WriteTo` copies.
    pub txid: u64,
}

impl Default for WriteOptions {
    fn default() -> WriteOptions {
        WriteOptions {
            fill_percent: 0.9,
            txid: 2,
        }
    }
}

/// What a source hands each key and value to.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// Buckets of sorted keys and values the writer can read twice.
pub trait Source {
    /// The buckets to write, in any order.
    fn bucket_names(&mut self) -> Result<Vec<Vec<u8>>>;
    /// Hands every key and value of `bucket` to `visit` in strictly
    /// increasing key order, stopping at the first error `visit` returns
    /// (and returning it). Called once when planning and once when writing;
    /// both calls must yield the same data.
    fn scan(&mut self, bucket: &[u8], visit: &mut Visit<'_>) -> Result<()>;
}

/// Buckets held in memory (small data, tests, the Python binding).
#[derive(Debug, Default, Clone)]
pub struct InMemory {
    buckets: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl InMemory {
    pub fn new() -> InMemory {
        InMemory::default()
    }

    /// The bucket `name`, created empty if absent.
    pub fn bucket(&mut self, name: &[u8]) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        self.buckets.entry(name.to_vec()).or_default()
    }
}

impl Source for InMemory {
    fn bucket_names(&mut self) -> Result<Vec<Vec<u8>>> {
        Ok(self.buckets.keys().cloned().collect())
    }

    fn scan(&mut self, bucket: &[u8], visit: &mut Visit<'_>) -> Result<()> {
        for (k, v) in self.buckets.get(bucket).into_iter().flatten() {
            visit(k, v)?;
        }
        Ok(())
    }
}

/// What a finished write produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub pages: u64,
    pub buckets: usize,
    /// Keys and values in all buckets.
    pub keys: u64,
}

/// A page (with its overflow pages) of a planned tree.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// The node's first key, in its tree's key store.
    key_at: u64,
    key_len: u32,
    /// Elements: keys and values on a leaf, children on a branch.
    count: u32,
    /// Bytes used: header, elements, keys and values.
    size: u64,
    /// The node's first page, counted from its tree's first page.
    page: u64,
}

/// Decides where pages end: bbolt's rule for splitting a node, applied as
/// the elements stream in — start a new page when the next element would
/// take this one past the fill threshold. An element larger than that gets
/// a page (and overflow pages) to itself.
///
/// Branch pages hold at least two children (bbolt's `MinKeysPerPage`), so
/// each level has at most half the pages of the one below, even when keys
/// are too long for two to fit in a page.
#[derive(Debug, Clone, Copy)]
struct Packer {
    page_size: u64,
    threshold: u64,
    /// Elements a page takes before it may be closed.
    min_count: u32,
    size: u64,
    count: u32,
}

impl Packer {
    fn new(opts: &WriteOptions, min_count: u32) -> Packer {
        let fill = opts.fill_percent.clamp(0.1, 1.0);
        Packer {
            page_size: u64::from(PAGE_SIZE),
            threshold: (f64::from(PAGE_SIZE) * fill) as u64,
            min_count,
            size: PAGE_HEADER_SIZE as u64,
            count: 0,
        }
    }

    fn for_leaves(opts: &WriteOptions) -> Packer {
        Packer::new(opts, 1)
    }

    fn for_branches(opts: &WriteOptions) -> Packer {
        Packer::new(opts, 2)
    }

    /// Whether an element of `elem` bytes must go on a new page.
    fn full_for(&self, elem: u64) -> bool {
        self.count >= self.min_count
            && (self.size + elem > self.threshold || self.count == u32::from(u16::MAX))
    }

    fn push(&mut self, elem: u64) {
        self.size += elem;
        self.count += 1;
    }

    /// Ends the current page: (elements, bytes).
    fn close(&mut self) -> (u32, u64) {
        let closed = (self.count, self.size);
        self.size = PAGE_HEADER_SIZE as u64;
        self.count = 0;
        closed
    }

    fn pages(&self, size: u64) -> u64 {
        size.div_ceil(self.page_size)
    }
}

/// The layout of one B+tree: its pages level by level, leaves first.
#[derive(Debug, Default)]
struct TreePlan {
    /// The first key of every page, back to back.
    keys: Vec<u8>,
    levels: Vec<Vec<Node>>,
    /// Where the tree starts in the file.
    first_page: u64,
    pages: u64,
}

impl TreePlan {
    fn key(&self, n: &Node) -> &[u8] {
        &self.keys[n.key_at as usize..n.key_at as usize + n.key_len as usize]
    }

    fn root(&self) -> &Node {
        &self.levels.last().expect("a tree has a level")[0]
    }

    fn root_page(&self) -> u64 {
        self.first_page + self.root().page
    }

    /// A single leaf small enough to live in its bucket's entry (bbolt
    /// inlines buckets of up to a quarter page).
    fn inline_size(&self) -> Option<u64> {
        let root = self.root();
        (self.levels.len() == 1 && root.size <= u64::from(PAGE_SIZE) / 4).then_some(root.size)
    }

    /// Builds branch levels over the leaves until one page remains, then
    /// numbers the pages: leaves, then each level up, the root last.
    fn finish(&mut self, opts: &WriteOptions) {
        while self.levels.last().expect("leaves").len() > 1 {
            let children = self.levels.last().expect("a level");
            let mut packer = Packer::for_branches(opts);
            let mut level: Vec<Node> = Vec::new();
            for child in children {
                let elem = (BRANCH_ELEMENT_SIZE + child.key_len as usize) as u64;
                if packer.full_for(elem) {
                    close_node(&mut level, &mut packer);
                }
                if packer.count == 0 {
                    level.push(Node {
                        key_at: child.key_at,
                        key_len: child.key_len,
                        count: 0,
                        size: 0,
                        page: 0,
                    });
                }
                packer.push(elem);
            }
            close_node(&mut level, &mut packer);
            balance_last_branch(&mut level, children, &packer);
            debug_assert!(level.len() < children.len(), "each level is narrower");
            self.levels.push(level);
        }
        let packer = Packer::for_branches(opts);
        let mut page = 0;
        for node in self.levels.iter_mut().flatten() {
            node.page = page;
            page += packer.pages(node.size);
        }
        self.pages = page;
    }
}

fn close_node(level: &mut [Node], packer: &mut Packer) {
    let (count, size) = packer.close();
    let node = level.last_mut().expect("a node was started");
    node.count = count;
    node.size = size;
}

/// bbolt expects branch pages to hold at least two children; greedy
/// packing can leave one on the last page, so move one over from the page
/// before when it fits.
fn balance_last_branch(level: &mut [Node], children: &[Node], packer: &Packer) {
    let n = level.len();
    if n < 2 || level[n - 1].count != 1 || level[n - 2].count < 3 {
        return;
    }
    let moved = &children[children.len() - 2];
    let elem = (BRANCH_ELEMENT_SIZE + moved.key_len as usize) as u64;
    if level[n - 1].size + elem > packer.threshold {
        return;
    }
    level[n - 2].count -= 1;
    level[n - 2].size -= elem;
    level[n - 1].count += 1;
    level[n - 1].size += elem;
    level[n - 1].key_at = moved.key_at;
    level[n - 1].key_len = moved.key_len;
}

/// Refuses what bbolt would refuse to store, and keys out of order.
fn check_item(bucket: &[u8], prev: Option<&[u8]>, key: &[u8], value: &[u8]) -> Result<()> {
    let name = String::from_utf8_lossy(bucket);
    if key.is_empty() {
        return Err(Error::Input(format!("bucket {name:?}: empty key")));
    }
    if key.len() > MAX_KEY_SIZE {
        return Err(Error::Input(format!(
            "bucket {name:?}: key of {} bytes, bbolt's limit is {MAX_KEY_SIZE}",
            key.len()
        )));
    }
    if value.len() > MAX_VALUE_SIZE {
        return Err(Error::Input(format!(
            "bucket {name:?}: value of {} bytes, bbolt's limit is {MAX_VALUE_SIZE}",
            value.len()
        )));
    }
    if prev.is_some_and(|p| key <= p) {
        return Err(Error::Input(format!(
            "bucket {name:?}: keys are not in strictly increasing order at {:?}",
            String::from_utf8_lossy(key)
        )));
    }
    Ok(())
}

fn leaf_elem(key: &[u8], value_len: usize) -> u64 {
    (LEAF_ELEMENT_SIZE + key.len() + value_len) as u64
}

/// The planning pass over one tree's leaves.
struct LeafPlanner<'a> {
    bucket: &'a [u8],
    packer: Packer,
    tree: TreePlan,
    prev: Option<Vec<u8>>,
    items: u64,
}

impl<'a> LeafPlanner<'a> {
    fn new(bucket: &'a [u8], opts: &WriteOptions) -> LeafPlanner<'a> {
        LeafPlanner {
            bucket,
            packer: Packer::for_leaves(opts),
            tree: TreePlan {
                levels: vec![Vec::new()],
                ..TreePlan::default()
            },
            prev: None,
            items: 0,
        }
    }

    fn add(&mut self, key: &[u8], value_len: usize) -> Result<()> {
        let elem = leaf_elem(key, value_len);
        let leaves = &mut self.tree.levels[0];
        if self.packer.full_for(elem) {
            close_node(leaves, &mut self.packer);
        }
        if self.packer.count == 0 {
            leaves.push(Node {
                key_at: self.tree.keys.len() as u64,
                key_len: key.len() as u32,
                count: 0,
                size: 0,
                page: 0,
            });
            self.tree.keys.extend_from_slice(key);
        }
        self.packer.push(elem);
        let prev = self.prev.get_or_insert_with(Vec::new);
        prev.clear();
        prev.extend_from_slice(key);
        self.items += 1;
        Ok(())
    }

    fn add_checked(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        check_item(self.bucket, self.prev.as_deref(), key, value)?;
        self.add(key, value.len())
    }

    fn finish(mut self, opts: &WriteOptions) -> (TreePlan, u64) {
        if self.tree.levels[0].is_empty() {
            // An empty tree is one empty leaf.
            self.tree.levels[0].push(Node {
                key_at: 0,
                key_len: 0,
                count: 0,
                size: 0,
                page: 0,
            });
        }
        close_node(&mut self.tree.levels[0], &mut self.packer);
        self.tree.finish(opts);
        (self.tree, self.items)
    }
}

/// One bucket's layout.
#[derive(Debug)]
struct BucketPlan {
    name: Vec<u8>,
    tree: TreePlan,
    /// The size of its single leaf when the bucket is stored inline.
    inline: Option<u64>,
    items: u64,
}

/// The layout of a whole file, from the planning pass.
#[derive(Debug)]
pub struct Plan {
    opts: WriteOptions,
    buckets: Vec<BucketPlan>,
    /// The tree of top-level buckets (the meta's root bucket).
    top: TreePlan,
    /// Pages in the file (bbolt's high-water mark).
    pages: u64,
}

/// Plans the file for `source`'s buckets: one pass over all their data.
pub fn plan(source: &mut dyn Source, opts: &WriteOptions) -> Result<Plan> {
    if opts.txid == 0 {
        return Err(Error::Input("txid must be at least 1".into()));
    }
    let mut names = source.bucket_names()?;
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::Input(format!(
            "bucket {:?} given twice",
            String::from_utf8_lossy(&w[0])
        )));
    }
    let mut buckets = Vec::with_capacity(names.len());
    let mut top = LeafPlanner::new(b"", opts);
    for name in names {
        if name.is_empty() || name.len() > MAX_KEY_SIZE {
            return Err(Error::Input(format!(
                "bucket names must be 1 to {MAX_KEY_SIZE} bytes, not {}",
                name.len()
            )));
        }
        let mut leaves = LeafPlanner::new(&name, opts);
        source.scan(&name, &mut |k, v| leaves.add_checked(k, v))?;
        let (tree, items) = leaves.finish(opts);
        let inline = tree.inline_size();
        let value_len = BUCKET_HEADER_SIZE + inline.unwrap_or(0) as usize;
        top.add(&name, value_len)?;
        buckets.push(BucketPlan {
            name,
            tree,
            inline,
            items,
        });
    }
    let (mut top, _) = top.finish(opts);
    top.first_page = FIRST_TREE_PAGE;
    let mut next = top.first_page + top.pages;
    for b in buckets.iter_mut().filter(|b| b.inline.is_none()) {
        b.tree.first_page = next;
        next += b.tree.pages;
    }
    Ok(Plan {
        opts: *opts,
        buckets,
        top,
        pages: next,
    })
}

/// Plans and writes `source`'s buckets to `sink`: two passes over the data.
pub fn write<W: Write>(source: &mut dyn Source, sink: W, opts: &WriteOptions) -> Result<Written> {
    plan(source, opts)?.write(source, sink)
}

/// Writes `source`'s buckets to a new file at `path`, with etcd's SHA-256
/// trailer when `trailer` (an etcd snapshot), synced to disk; returns its
/// size. A failed write removes the partial file.
pub fn write_file(path: &Path, source: &mut dyn Source, trailer: bool) -> Result<u64> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let file = File::create(path).map_err(|e| Error::io(ctx("create"), e))?;
    let written = (|| {
        let plan = plan(source, &WriteOptions::default())?;
        let out = BufWriter::with_capacity(1 << 20, &file);
        let size = if trailer {
            let mut w = TrailerWriter::new(out);
            plan.write(source, &mut w)?;
            w.finish()
                .and_then(|mut out| out.flush())
                .map_err(|e| Error::io(ctx("write"), e))?;
            plan.file_size() + TRAILER_LEN
        } else {
            plan.write(source, out)?;
            plan.file_size()
        };
        file.sync_all().map_err(|e| Error::io(ctx("sync"), e))?;
        Ok(size)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// Elements of the node being written.
#[derive(Debug, Default)]
struct NodeBuf {
    /// (flags, key length, value length) per element.
    elems: Vec<(u32, u32, u32)>,
    /// Keys and values back to back.
    data: Vec<u8>,
}

impl NodeBuf {
    fn push(&mut self, flags: u32, key: &[u8], value: &[u8]) {
        self.elems
            .push((flags, key.len() as u32, value.len() as u32));
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
    }

    fn clear(&mut self) {
        self.elems.clear();
        self.data.clear();
    }

    /// Lays the elements out as a leaf page into `out` (zeroed, big enough).
    fn encode_leaf(&self, id: u64, overflow: u32, out: &mut [u8]) {
        PageHeader {
            id,
            flags: LEAF_PAGE,
            count: self.elems.len() as u16,
            overflow,
        }
        .encode(out);
        let mut off = PAGE_HEADER_SIZE + self.elems.len() * LEAF_ELEMENT_SIZE;
        let mut data = 0;
        for (i, &(flags, klen, vlen)) in self.elems.iter().enumerate() {
            let el = PAGE_HEADER_SIZE + i * LEAF_ELEMENT_SIZE;
            encode_leaf_element(&mut out[el..], flags, (off - el) as u32, klen, vlen);
            let n = klen as usize + vlen as usize;
            out[off..off + n].copy_from_slice(&self.data[data..data + n]);
            off += n;
            data += n;
        }
    }
}

/// Writes pages in order to the sink.
struct PageSink<W: Write> {
    w: W,
    next: u64,
    buf: Vec<u8>,
}

impl<W: Write> PageSink<W> {
    /// A zeroed buffer for `pages` pages, to fill and then [`PageSink::put`].
    fn buffer(&mut self, pages: u64) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.resize(pages as usize * PAGE_SIZE as usize, 0);
        buf
    }

    fn put(&mut self, id: u64, buf: Vec<u8>) -> Result<()> {
        assert_eq!(id, self.next, "pages are written in order");
        self.w
            .write_all(&buf)
            .map_err(|e| Error::io(format!("write page {id}"), e))?;
        self.next += buf.len() as u64 / u64::from(PAGE_SIZE);
        self.buf = buf;
        Ok(())
    }
}

/// Where the writing pass's leaves go: pages, or an inline bucket's value.
trait LeafOut {
    fn leaf(&mut self, tree: &TreePlan, node: &Node, buf: &NodeBuf) -> Result<()>;
}

impl<W: Write> LeafOut for PageSink<W> {
    fn leaf(&mut self, tree: &TreePlan, node: &Node, buf: &NodeBuf) -> Result<()> {
        let pages = node.size.div_ceil(u64::from(PAGE_SIZE));
        let id = tree.first_page + node.page;
        let mut page = self.buffer(pages);
        buf.encode_leaf(id, (pages - 1) as u32, &mut page);
        self.put(id, page)
    }
}

/// An inline bucket's value: bucket header, then its leaf.
struct InlineValue(Vec<u8>);

impl LeafOut for InlineValue {
    fn leaf(&mut self, _: &TreePlan, node: &Node, buf: &NodeBuf) -> Result<()> {
        self.0.clear();
        self.0.resize(BUCKET_HEADER_SIZE + node.size as usize, 0);
        buf.encode_leaf(0, 0, &mut self.0[BUCKET_HEADER_SIZE..]);
        Ok(())
    }
}

/// The writing pass over one tree's leaves: packs elements as the planner
/// did and checks each page against the plan before emitting it.
struct LeafWriter<'a, O: LeafOut> {
    bucket: &'a [u8],
    tree: &'a TreePlan,
    out: &'a mut O,
    packer: Packer,
    buf: NodeBuf,
    /// The leaf being filled.
    node: usize,
    prev: Option<Vec<u8>>,
}

impl<'a, O: LeafOut> LeafWriter<'a, O> {
    fn new(bucket: &'a [u8], tree: &'a TreePlan, out: &'a mut O, opts: &WriteOptions) -> Self {
        LeafWriter {
            bucket,
            tree,
            out,
            packer: Packer::for_leaves(opts),
            buf: NodeBuf::default(),
            node: 0,
            prev: None,
        }
    }

    fn changed(&self, what: String) -> Error {
        Error::Changed(format!(
            "bucket {:?}: {what}",
            String::from_utf8_lossy(self.bucket)
        ))
    }

    fn add(&mut self, flags: u32, key: &[u8], value: &[u8]) -> Result<()> {
        check_item(self.bucket, self.prev.as_deref(), key, value)?;
        let elem = leaf_elem(key, value.len());
        if self.packer.full_for(elem) {
            self.flush()?;
        }
        if self.packer.count == 0 {
            let Some(planned) = self.tree.levels[0].get(self.node) else {
                return Err(self.changed("more keys than planned".into()));
            };
            if self.tree.key(planned) != key {
                return Err(self.changed(format!(
                    "leaf {} starts at another key than planned",
                    self.node
                )));
            }
        }
        self.packer.push(elem);
        self.buf.push(flags, key, value);
        let prev = self.prev.get_or_insert_with(Vec::new);
        prev.clear();
        prev.extend_from_slice(key);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let (count, size) = self.packer.close();
        let Some(planned) = self.tree.levels[0].get(self.node) else {
            return Err(self.changed("more keys than planned".into()));
        };
        if (count, size) != (planned.count, planned.size) {
            return Err(self.changed(format!(
                "leaf {} holds {count} keys in {size} bytes, planned {} in {}",
                self.node, planned.count, planned.size
            )));
        }
        self.out.leaf(self.tree, planned, &self.buf)?;
        self.buf.clear();
        self.node += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.flush()?;
        if self.node != self.tree.levels[0].len() {
            return Err(self.changed(format!(
                "{} leaves written, {} planned",
                self.node,
                self.tree.levels[0].len()
            )));
        }
        Ok(())
    }
}

impl Plan {
    /// The size of the file [`Plan::write`] will produce.
    pub fn file_size(&self) -> u64 {
        self.pages * u64::from(PAGE_SIZE)
    }

    /// The writing pass: reads every bucket again and streams the file to
    /// `sink` in page order.
    pub fn write<W: Write>(&self, source: &mut dyn Source, sink: W) -> Result<Written> {
        let mut sink = PageSink {
            w: sink,
            next: 0,
            buf: Vec::new(),
        };
        self.write_head(&mut sink)?;

        // The tree of top-level buckets, whose entries hold the inline buckets.
        let mut inline = InlineValue(Vec::new());
        let mut top = LeafWriter::new(b"", &self.top, &mut sink, &self.opts);
        for b in &self.buckets {
            let value = match b.inline {
                Some(_) => {
                    let mut w = LeafWriter::new(&b.name, &b.tree, &mut inline, &self.opts);
                    source.scan(&b.name, &mut |k, v| w.add(0, k, v))?;
                    w.finish()?;
                    inline.0.as_slice()
                }
                None => {
                    let header = BucketHeader {
                        root: b.tree.root_page(),
                        sequence: 0,
                    };
                    inline.0.clear();
                    inline.0.resize(BUCKET_HEADER_SIZE, 0);
                    header.encode(&mut inline.0);
                    inline.0.as_slice()
                }
            };
            top.add(BUCKET_LEAF_FLAG, &b.name, value)?;
        }
        top.finish()?;
        write_branches(&self.top, &mut sink)?;

        for b in self.buckets.iter().filter(|b| b.inline.is_none()) {
            let mut w = LeafWriter::new(&b.name, &b.tree, &mut sink, &self.opts);
            source.scan(&b.name, &mut |k, v| w.add(0, k, v))?;
            w.finish()?;
            write_branches(&b.tree, &mut sink)?;
        }
        assert_eq!(sink.next, self.pages, "the plan's page count");
        sink.w
            .flush()
            .map_err(|e| Error::io("flush the written file", e))?;
        Ok(Written {
            bytes: self.file_size(),
            pages: self.pages,
            buckets: self.buckets.len(),
            keys: self.buckets.iter().map(|b| b.items).sum(),
        })
    }

    /// Meta pages 0 and 1, then an empty freelist at page 2.
    fn write_head<W: Write>(&self, sink: &mut PageSink<W>) -> Result<()> {
        for (id, txid) in [(0, self.opts.txid), (1, self.opts.txid - 1)] {
            let meta = Meta::new(PAGE_SIZE, self.top.root_page(), 2, self.pages, txid);
            let mut page = sink.buffer(1);
            PageHeader {
                id,
                flags: META_PAGE,
                count: 0,
                overflow: 0,
            }
            .encode(&mut page);
            page[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + meta.encode().len()]
                .copy_from_slice(&meta.encode());
            sink.put(id, page)?;
        }
        let mut page = sink.buffer(1);
        PageHeader {
            id: 2,
            flags: FREELIST_PAGE,
            count: 0,
            overflow: 0,
        }
        .encode(&mut page);
        sink.put(2, page)
    }
}

/// A tree's branch pages, level by level, from the plan alone.
fn write_branches<W: Write>(tree: &TreePlan, sink: &mut PageSink<W>) -> Result<()> {
    for pair in tree.levels.windows(2) {
        let (children, level) = (&pair[0], &pair[1]);
        let mut child = 0;
        for node in level {
            let pages = node.size.div_ceil(u64::from(PAGE_SIZE));
            let id = tree.first_page + node.page;
            let mut page = sink.buffer(pages);
            PageHeader {
                id,
                flags: BRANCH_PAGE,
                count: node.count as u16,
                overflow: (pages - 1) as u32,
            }
            .encode(&mut page);
            let mut off = PAGE_HEADER_SIZE + node.count as usize * BRANCH_ELEMENT_SIZE;
            for i in 0..node.count as usize {
                let c = &children[child + i];
                let key = tree.key(c);
                let el = PAGE_HEADER_SIZE + i * BRANCH_ELEMENT_SIZE;
                let pgid = tree.first_page + c.page;
                encode_branch_element(&mut page[el..], (off - el) as u32, key.len() as u32, pgid);
                page[off..off + key.len()].copy_from_slice(key);
                off += key.len();
            }
            child += node.count as usize;
            sink.put(id, page)?;
        }
    }
    Ok(())
}
