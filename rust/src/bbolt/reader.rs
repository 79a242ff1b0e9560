//! Reading a bbolt file: meta selection, buckets and cursors.
//!
//! Pages are read when a cursor reaches them (pread on a file, a copy out of
//! a byte slice), and a cursor holds one page per tree level, so memory does
//! not grow with the file. Nothing read is trusted: every page reference,
//! element and key is checked before use, and a walk checks what `bbolt
//! check` checks of key order — each key above the one before it and inside
//! the range its parent branch gives it. Those ranges are disjoint, so a page
//! reached twice must be empty; with a depth limit and a check against the
//! pages above, walks over corrupt files end, in time linear in the pages.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::layout::{
    u32_at, u64_at, BucketHeader, Meta, PageHeader, BRANCH_ELEMENT_SIZE, BRANCH_PAGE,
    BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, LEAF_ELEMENT_SIZE, LEAF_PAGE, META_SIZE, NO_FREELIST,
    PAGE_HEADER_SIZE,
};
use super::trailer::{self, HashCheck};
use super::{Error, Result};

/// Deeper trees are refused: a tree of 2^64 pages with two children per
/// branch is 64 levels deep, so anything deeper is a reference cycle.
const MAX_DEPTH: usize = 64;
/// Page sizes bbolt can be configured with (it probes up to 16 MiB).
const MIN_PAGE_SIZE: u64 = 1024;
const MAX_PAGE_SIZE: u64 = 16 << 20;

/// Where pages come from.
pub trait PageSource {
    /// Bytes available: for an etcd snapshot, the part before its trailer.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; callers stay within [`PageSource::size`].
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

/// A file read with positioned reads (no mmap, no seek position shared).
#[derive(Debug, Clone)]
pub struct FileSource {
    file: Arc<File>,
    len: u64,
}

impl FileSource {
    /// The first `len` bytes of `file`.
    pub fn new(file: File, len: u64) -> FileSource {
        FileSource {
            file: Arc::new(file),
            len,
        }
    }
}

impl PageSource for FileSource {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

impl PageSource for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(eof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fn eof() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::UnexpectedEof)
}

/// A place in the file, for error messages.
#[derive(Debug, Clone, Copy)]
struct Loc {
    page: u64,
    offset: u64,
}

impl Loc {
    fn at(self, delta: usize) -> Loc {
        Loc {
            page: self.page,
            offset: self.offset + delta as u64,
        }
    }

    fn corrupt(self, what: impl Into<String>) -> Error {
        Error::Corrupt {
            page: self.page,
            offset: self.offset,
            what: what.into(),
        }
    }
}

/// A key for an error message: text when printable, hex otherwise.
fn show(key: &[u8]) -> String {
    let shown = &key[..key.len().min(48)];
    let more = if key.len() > shown.len() { "..." } else { "" };
    if shown.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}{more}", String::from_utf8_lossy(shown))
    } else {
        let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}{more}")
    }
}

/// A branch or leaf page (with its overflow pages), or an inline bucket's page.
#[derive(Debug, Clone)]
struct Page {
    header: PageHeader,
    /// The page's id; for an inline page, the page holding it.
    id: u64,
    /// Where `data[0]` is in the file.
    offset: u64,
    inline: bool,
    data: Vec<u8>,
}

impl Page {
    /// Checks the header's element table fits before anything reads it.
    fn new(id: u64, offset: u64, inline: bool, data: Vec<u8>) -> Result<Page> {
        let loc = Loc { page: id, offset };
        if data.len() < PAGE_HEADER_SIZE {
            return Err(loc.corrupt(format!(
                "inline bucket of {} bytes is shorter than a page header",
                data.len()
            )));
        }
        let header = PageHeader::decode(&data);
        let what = if inline { "inline bucket page" } else { "page" };
        if header.flags != LEAF_PAGE && (inline || header.flags != BRANCH_PAGE) {
            return Err(loc.corrupt(format!(
                "{what} is a {} page where a tree page was expected",
                header.kind()
            )));
        }
        let table = PAGE_HEADER_SIZE + usize::from(header.count) * LEAF_ELEMENT_SIZE;
        if table > data.len() {
            return Err(loc.corrupt(format!(
                "{what} claims {} elements, {table} bytes of element headers in {} bytes",
                header.count,
                data.len()
            )));
        }
        Ok(Page {
            header,
            id,
            offset,
            inline,
            data,
        })
    }

    fn is_leaf(&self) -> bool {
        self.header.flags == LEAF_PAGE
    }

    fn count(&self) -> usize {
        usize::from(self.header.count)
    }

    fn loc(&self, at: usize) -> Loc {
        Loc {
            page: self.id,
            offset: self.offset,
        }
        .at(at)
    }

    /// The bytes `len` long at `pos` past element `i` (whose header is at `el`).
    fn span(&self, i: usize, el: usize, pos: u32, len: u64, kind: &str) -> Result<&[u8]> {
        let start = el as u64 + u64::from(pos);
        let end = start + len;
        if end > self.data.len() as u64 {
            return Err(self.loc(el).corrupt(format!(
                "{kind} element {i} points at bytes {start}..{end}, past the page's {} bytes",
                self.data.len()
            )));
        }
        Ok(&self.data[start as usize..end as usize])
    }

    /// Leaf element `i`: (flags, key, value, offset of the value in the file).
    fn leaf(&self, i: usize) -> Result<(u32, &[u8], &[u8], u64)> {
        let el = PAGE_HEADER_SIZE + i * LEAF_ELEMENT_SIZE;
        let flags = u32_at(&self.data, el);
        let pos = u32_at(&self.data, el + 4);
        let ksize = u64::from(u32_at(&self.data, el + 8));
        let vsize = u64::from(u32_at(&self.data, el + 12));
        let kv = self.span(i, el, pos, ksize + vsize, "leaf")?;
        let (key, value) = kv.split_at(ksize as usize);
        let value_offset = self.offset + el as u64 + u64::from(pos) + ksize;
        Ok((flags, key, value, value_offset))
    }

    /// Branch element `i`: (key, child page id).
    fn branch(&self, i: usize) -> Result<(&[u8], u64)> {
        let el = PAGE_HEADER_SIZE + i * BRANCH_ELEMENT_SIZE;
        let pos = u32_at(&self.data, el);
        let ksize = u64::from(u32_at(&self.data, el + 4));
        let child = u64_at(&self.data, el + 8);
        Ok((self.span(i, el, pos, ksize, "branch")?, child))
    }
}

/// An open bbolt database: the meta it was opened at and its page source.
#[derive(Debug, Clone)]
pub struct Db<S> {
    src: S,
    page_size: u64,
    meta: Meta,
    meta_page: u64,
}

impl Db<FileSource> {
    /// Opens a bbolt file as bbolt does: bytes past the high-water mark (an
    /// etcd snapshot's trailer, preallocated space) are ignored.
    pub fn open(path: &Path) -> Result<Db<FileSource>> {
        let file =
            File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        Db::from_source(FileSource::new(file, len))
    }

    /// Opens an etcd snapshot, first checking its SHA-256 trailer as
    /// `etcdutl snapshot restore` does ([`HashCheck::Skip`] only strips it).
    pub fn open_snapshot(path: &Path, check: HashCheck) -> Result<Db<FileSource>> {
        let file =
            File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let len = trailer::check_file(&file, check)?;
        Db::from_source(FileSource::new(file, len))
    }
}

impl<'a> Db<&'a [u8]> {
    /// Reads a database held in memory.
    pub fn from_bytes(data: &'a [u8]) -> Result<Db<&'a [u8]>> {
        Db::from_source(data)
    }
}

/// Reads the meta at `offset`; the reason it is unusable otherwise.
fn read_meta(src: &impl PageSource, offset: u64) -> Result<Meta, String> {
    let mut buf = [0u8; PAGE_HEADER_SIZE + META_SIZE];
    if offset + buf.len() as u64 > src.size() {
        return Err(format!("the file ends at {} bytes, before it", src.size()));
    }
    src.read_at(&mut buf, offset)
        .map_err(|e| format!("read failed: {e}"))?;
    let meta = Meta::decode(&buf[PAGE_HEADER_SIZE..]);
    match meta.invalid() {
        Some(why) => Err(why),
        None => Ok(meta),
    }
}

impl<S: PageSource + Clone> Db<S> {
    /// Opens the database in `src`: validates both meta pages (magic,
    /// version, checksum) and, as bbolt does, uses the valid one with the
    /// higher transaction id.
    pub fn from_source(src: S) -> Result<Db<S>> {
        let meta0 = read_meta(&src, 0);
        // Meta 1 sits one page in; with meta 0 unreadable the page size is
        // unknown, so probe bbolt's possible page sizes for a valid meta.
        let (page_size, meta1) = match &meta0 {
            Ok(m) => (
                u64::from(m.page_size),
                read_meta(&src, u64::from(m.page_size)),
            ),
            Err(_) => (0..=14)
                .map(|i| 1024u64 << i)
                .take_while(|pos| pos + 1024 <= src.size())
                .find_map(|pos| {
                    read_meta(&src, pos)
                        .ok()
                        .filter(|m| u64::from(m.page_size) == pos)
                        .map(|m| (pos, Ok(m)))
                })
                .unwrap_or((0, Err("no valid meta found at any page size".into()))),
        };
        let (meta, meta_page) = match (&meta0, &meta1) {
            (Ok(m0), Ok(m1)) if m1.txid > m0.txid => (*m1, 1),
            (Ok(m0), _) => (*m0, 0),
            (Err(_), Ok(m1)) => (*m1, 1),
            (Err(e0), Err(e1)) => {
                return Err(Loc { page: 0, offset: 0 }.corrupt(format!(
                    "not a bbolt database: meta page 0: {e0}; meta page 1: {e1}"
                )))
            }
        };
        let loc = Loc {
            page: meta_page,
            offset: meta_page * page_size,
        };
        if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size)
            || u64::from(meta.page_size) != page_size
        {
            return Err(loc.corrupt(format!("unusable page size {}", meta.page_size)));
        }
        let hwm = meta.pgid;
        if hwm < 3
            || hwm
                .checked_mul(page_size)
                .is_none_or(|end| end > src.size())
        {
            return Err(Loc {
                page: src.size() / page_size,
                offset: src.size(),
            }
            .corrupt(format!(
                "truncated: meta page {meta_page} counts {hwm} pages of {page_size} bytes, \
                 the file has {} bytes",
                src.size()
            )));
        }
        if !(2..hwm).contains(&meta.root.root) {
            return Err(loc.corrupt(format!(
                "root page {} is outside the data pages 2..{hwm}",
                meta.root.root
            )));
        }
        if meta.freelist != NO_FREELIST && !(2..hwm).contains(&meta.freelist) {
            return Err(loc.corrupt(format!(
                "freelist page {} is outside the data pages 2..{hwm}",
                meta.freelist
            )));
        }
        Ok(Db {
            src,
            page_size,
            meta,
            meta_page,
        })
    }

    /// The meta in use.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Which meta page is in use (0 or 1).
    pub fn meta_page(&self) -> u64 {
        self.meta_page
    }

    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The database's size as bbolt counts it (`tx.Size()`): pages in use.
    pub fn size(&self) -> u64 {
        self.meta.pgid * self.page_size
    }

    /// The root bucket, whose entries are the top-level buckets.
    pub fn root(&self) -> Bucket<S> {
        Bucket {
            db: self.clone(),
            root: Root::Page(self.meta.root.root),
            referrer: Loc {
                page: self.meta_page,
                offset: self.meta_page * self.page_size,
            },
        }
    }

    /// The names of the top-level buckets, in bbolt's (byte) order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        let mut c = self.root().cursor();
        while let Some(e) = c.next()? {
            if !e.is_bucket() {
                return Err(e
                    .loc()
                    .corrupt(format!("top-level key {} is not a bucket", show(e.key))));
            }
            names.push(e.key.to_vec());
        }
        Ok(names)
    }

    /// The top-level bucket `name`, if there is one.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<S>>> {
        self.root().bucket(name)
    }

    /// Reads tree page `id`, referenced from `from`.
    fn read_page(&self, id: u64, from: Loc) -> Result<Page> {
        let hwm = self.meta.pgid;
        if !(2..hwm).contains(&id) {
            return Err(from.corrupt(format!(
                "reference to page {id}, outside the data pages 2..{hwm}"
            )));
        }
        let ps = self.page_size as usize;
        let offset = id * self.page_size;
        let loc = Loc { page: id, offset };
        let mut data = vec![0u8; ps];
        self.src
            .read_at(&mut data, offset)
            .map_err(|e| Error::io(format!("read page {id} at offset {offset}"), e))?;
        let header = PageHeader::decode(&data);
        if header.id != id {
            return Err(loc.corrupt(format!("page header says it is page {}", header.id)));
        }
        if header.overflow > 0 {
            let last = id + u64::from(header.overflow);
            if last >= hwm {
                return Err(loc.corrupt(format!(
                    "{} overflow pages run past the high-water mark {hwm}",
                    header.overflow
                )));
            }
            // Bounded by the file: `last` is below the high-water mark.
            data.resize((last - id + 1) as usize * ps, 0);
            self.src
                .read_at(&mut data[ps..], offset + self.page_size)
                .map_err(|e| Error::io(format!("read page {id}'s overflow"), e))?;
        }
        Page::new(id, offset, false, data)
    }
}

/// Where a bucket's tree starts.
#[derive(Debug, Clone)]
enum Root {
    Page(u64),
    /// Small buckets live inside their entry's value.
    Inline(Page),
}

/// A bucket: a B+tree of keys, values and nested buckets.
#[derive(Debug, Clone)]
pub struct Bucket<S> {
    db: Db<S>,
    root: Root,
    /// The entry (or meta) that points at this bucket.
    referrer: Loc,
}

impl<S: PageSource + Clone> Bucket<S> {
    /// A cursor before the first entry.
    pub fn cursor(&self) -> Cursor<S> {
        Cursor {
            db: self.db.clone(),
            root: self.root.clone(),
            referrer: self.referrer,
            stack: Vec::new(),
            last: None,
            started: false,
        }
    }

    /// The value at `key`; None when absent or when `key` names a nested
    /// bucket (as bbolt's `Get`).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut c = self.cursor();
        c.seek(key)?;
        Ok(match c.next()? {
            Some(e) if e.key == key && !e.is_bucket() => Some(e.value.to_vec()),
            _ => None,
        })
    }

    /// The nested bucket `name`, if there is one.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<S>>> {
        let mut c = self.cursor();
        c.seek(name)?;
        match c.next()? {
            Some(e) if e.key == name && e.is_bucket() => Ok(Some(e.open_in(&self.db)?)),
            Some(e) if e.key == name => Err(e
                .loc()
                .corrupt(format!("{} is a key, not a bucket", show(name)))),
            _ => Ok(None),
        }
    }
}

/// One entry of a bucket, borrowed from its cursor.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub key: &'a [u8],
    /// The value; for a nested bucket, its bucket header (and inline page).
    pub value: &'a [u8],
    pub flags: u32,
    page: u64,
    value_offset: u64,
}

impl Entry<'_> {
    /// Whether this entry is a nested bucket.
    pub fn is_bucket(&self) -> bool {
        self.flags & BUCKET_LEAF_FLAG != 0
    }

    fn loc(&self) -> Loc {
        Loc {
            page: self.page,
            offset: self.value_offset,
        }
    }

    /// The nested bucket this entry holds.
    fn open_in<S: PageSource + Clone>(&self, db: &Db<S>) -> Result<Bucket<S>> {
        let loc = self.loc();
        if self.value.len() < BUCKET_HEADER_SIZE {
            return Err(loc.corrupt(format!(
                "bucket {}: header of {} bytes, want {BUCKET_HEADER_SIZE}",
                show(self.key),
                self.value.len()
            )));
        }
        let header = BucketHeader::decode(self.value);
        let root = if header.root == 0 {
            let data = self.value[BUCKET_HEADER_SIZE..].to_vec();
            let at = loc.at(BUCKET_HEADER_SIZE);
            Root::Inline(Page::new(at.page, at.offset, true, data)?)
        } else {
            Root::Page(header.root)
        };
        Ok(Bucket {
            db: db.clone(),
            root,
            referrer: loc,
        })
    }
}

/// One level of a cursor's walk down a tree.
#[derive(Debug)]
struct Frame {
    page: Page,
    /// The next element to visit.
    index: usize,
    /// The range of keys the parent branch allows below it: [lo, hi).
    lo: Option<Vec<u8>>,
    hi: Option<Vec<u8>>,
}

/// Walks a bucket's entries in key order.
#[derive(Debug)]
pub struct Cursor<S> {
    db: Db<S>,
    root: Root,
    referrer: Loc,
    stack: Vec<Frame>,
    /// The last key returned, to check the order.
    last: Option<Vec<u8>>,
    started: bool,
}

impl<S: PageSource + Clone> Cursor<S> {
    /// The next entry, or None past the last one.
    #[allow(clippy::should_implement_trait)] // entries borrow the cursor
    pub fn next(&mut self) -> Result<Option<Entry<'_>>> {
        if !self.started {
            self.started = true;
            self.push_root()?;
        }
        let index = loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(None);
            };
            if top.index >= top.page.count() {
                self.stack.pop();
                continue;
            }
            if !top.page.is_leaf() {
                self.descend()?;
                continue;
            }
            let i = top.index;
            top.index += 1;
            let (_, key, _, _) = top.page.leaf(i)?;
            let loc = top.page.loc(PAGE_HEADER_SIZE + i * LEAF_ELEMENT_SIZE);
            if let Some(last) = &self.last {
                if key <= last.as_slice() {
                    return Err(loc.corrupt(format!(
                        "key {} does not sort after the key before it, {}",
                        show(key),
                        show(last)
                    )));
                }
            }
            if top.lo.as_deref().is_some_and(|lo| key < lo)
                || top.hi.as_deref().is_some_and(|hi| key >= hi)
            {
                return Err(loc.corrupt(format!(
                    "key {} is outside the range its parent branch gives this page",
                    show(key)
                )));
            }
            let last = self.last.get_or_insert_with(Vec::new);
            last.clear();
            last.extend_from_slice(key);
            break i;
        };
        let page = &self.stack.last().expect("a leaf").page;
        let (flags, key, value, value_offset) = page.leaf(index)?;
        Ok(Some(Entry {
            key,
            value,
            flags,
            page: page.id,
            value_offset,
        }))
    }

    /// Positions the cursor so that [`Cursor::next`] returns the first entry
    /// whose key is at least `target`.
    pub fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.stack.clear();
        self.last = None;
        self.started = true;
        self.push_root()?;
        loop {
            let top = self.stack.last_mut().expect("a root");
            if top.page.is_leaf() {
                let mut i = 0;
                while i < top.page.count() && top.page.leaf(i)?.1 < target {
                    i += 1;
                }
                top.index = i;
                return Ok(());
            }
            // The last child whose first key is at most the target (branch
            // keys were checked to be in order when the page was read).
            let mut i = 0;
            while i + 1 < top.page.count() && top.page.branch(i + 1)?.0 <= target {
                i += 1;
            }
            top.index = i;
            self.descend()?;
        }
    }

    fn push_root(&mut self) -> Result<()> {
        let page = match &self.root {
            Root::Page(id) => self.db.read_page(*id, self.referrer)?,
            Root::Inline(page) => page.clone(),
        };
        self.push(page, None, None)
    }

    /// Checks a page's branch keys, then makes it the cursor's deepest level.
    fn push(&mut self, page: Page, lo: Option<Vec<u8>>, hi: Option<Vec<u8>>) -> Result<()> {
        if !page.is_leaf() {
            if page.count() == 0 {
                return Err(page.loc(0).corrupt("empty branch page"));
            }
            let mut prev: Option<&[u8]> = None;
            for i in 0..page.count() {
                let (key, _) = page.branch(i)?;
                let in_range = lo.as_deref().is_none_or(|lo| key >= lo)
                    && hi.as_deref().is_none_or(|hi| key < hi)
                    && prev.is_none_or(|p| key > p);
                if !in_range {
                    return Err(page
                        .loc(PAGE_HEADER_SIZE + i * BRANCH_ELEMENT_SIZE)
                        .corrupt(format!(
                            "branch key {} is out of order or outside its parent's range",
                            show(key)
                        )));
                }
                prev = Some(key);
            }
        }
        self.stack.push(Frame {
            page,
            index: 0,
            lo,
            hi,
        });
        Ok(())
    }

    /// Steps into the child at the deepest branch's current element.
    fn descend(&mut self) -> Result<()> {
        let depth = self.stack.len();
        let top = self.stack.last_mut().expect("a branch");
        let i = top.index;
        top.index += 1;
        let (key, child) = top.page.branch(i)?;
        let loc = top.page.loc(PAGE_HEADER_SIZE + i * BRANCH_ELEMENT_SIZE);
        let lo = Some(key.to_vec());
        let hi = if i + 1 < top.page.count() {
            Some(top.page.branch(i + 1)?.0.to_vec())
        } else {
            top.hi.clone()
        };
        if depth >= MAX_DEPTH {
            return Err(loc.corrupt(format!("tree deeper than {MAX_DEPTH} levels")));
        }
        if self
            .stack
            .iter()
            .any(|f| !f.page.inline && f.page.id == child)
        {
            return Err(loc.corrupt(format!(
                "branch refers to page {child}, one of its own ancestors"
            )));
        }
        let page = self.db.read_page(child, loc)?;
        self.push(page, lo, hi)
    }
}
