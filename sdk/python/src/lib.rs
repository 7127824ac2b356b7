//! `aiaudit._native`: the Rust emitter (`aiaudit-emitter`) and the ledger's
//! own event validation (`aiaudit-event`) for Python. The Python package
//! (`sdk/python/python/aiaudit`) wraps this in its typed API; nothing here
//! is meant to be called directly.
//!
//! What lives here rather than in Python: turning a `dict` into JSON with
//! the failing field named, filling `id` (UUIDv7) and `time`, validating
//! against the same schema code the ledger runs, and handing the event to
//! the emitter's queue without holding the GIL while it waits.

use aiaudit_emitter::{Compression, EmitError, Emitter, FullPolicy, SignatureFormat, SpoolError};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pyo3::create_exception!(
    _native,
    AuditError,
    pyo3::exceptions::PyException,
    "Base class of the errors the aiaudit package raises."
);
pyo3::create_exception!(
    _native,
    InvalidEvent,
    PyValueError,
    "The event is not a valid audit event (schema v1); `field` names the first bad field, `errors` lists all."
);
pyo3::create_exception!(
    _native,
    SpoolFailure,
    PyOSError,
    "The spool directory cannot be used: unwritable, damaged, or in use by another emitter."
);
pyo3::create_exception!(
    _native,
    QueueFull,
    AuditError,
    "on_full=\"drop\" and the queue is full: the event was not queued (counted in stats().dropped)."
);
pyo3::create_exception!(
    _native,
    EmitterClosed,
    AuditError,
    "The emitter was closed, or belongs to the parent of this forked process."
);

/// Nesting deeper than this is refused while converting (the schema allows
/// 16 levels); it also stops a dict that contains itself.
const MAX_CONVERT_DEPTH: usize = 32;

/// What converting an event measured on the way.
#[derive(Default)]
struct Tally {
    /// Roughly the bytes of JSON (for the size limit without serialising
    /// every event twice).
    bytes: usize,
    /// Nesting depth as the schema counts it (1: an object of scalars), so
    /// that validation need not walk the event again.
    depth: usize,
}

/// One step of the path to a bad value.
enum Step {
    Key(String),
    Index(usize),
}

/// A conversion failure: what is wrong, and where. The path is collected
/// innermost first while the error travels up, so that converting a good
/// event allocates nothing for paths.
struct Bad {
    rev_path: Vec<Step>,
    detail: String,
}

impl Bad {
    fn new(detail: impl Into<String>) -> Self {
        Bad {
            rev_path: Vec::new(),
            detail: detail.into(),
        }
    }
    fn under(mut self, step: Step) -> Self {
        self.rev_path.push(step);
        self
    }
    /// The field as the ledger's errors name it: `ai.gen_ai.usage.input_tokens`, `attributes.tags[2]`.
    fn field(&self) -> String {
        let mut out = String::new();
        for step in self.rev_path.iter().rev() {
            match step {
                Step::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

// `PyUnicode_AsUTF8AndSize` has been part of CPython's public C API and
// exported since 3.3; the stable ABI lists it from 3.10, so pyo3 offers it
// (`to_str`) only to abi3-py310 builds. This wheel serves 3.9 too, where the
// symbol is just as present. It reads the UTF-8 form CPython caches in the
// str, where the portable `to_cow` makes a bytes object per string: 13 % of
// `emit` for 1 KiB events (docs/performance.md, "Python emitter").
extern "C" {
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut ffi::PyObject,
        size: *mut ffi::Py_ssize_t,
    ) -> *const std::os::raw::c_char;
}

/// The UTF-8 text of a `str` (exact or subclass).
///
/// # Safety
/// `s` is a live `str` and the GIL is held.
unsafe fn text(py: Python<'_>, s: *mut ffi::PyObject) -> Result<String, Bad> {
    let mut len: ffi::Py_ssize_t = 0;
    let ptr = PyUnicode_AsUTF8AndSize(s, &mut len);
    if ptr.is_null() {
        // A lone surrogate: CPython raised UnicodeEncodeError; take it back.
        let _ = PyErr::take(py);
        return Err(Bad::new(
            "a string that is not valid UTF-8 (lone surrogates)",
        ));
    }
    // The `len` bytes at `ptr` are valid UTF-8: CPython encodes a str with
    // the strict handler, which fails (above) on the one thing a str can
    // hold that UTF-8 cannot, a lone surrogate. Checking them again cost
    // 13 % of `emit` (docs/performance.md, "Python emitter").
    let text =
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(ptr.cast::<u8>(), len as usize));
    Ok(text.to_owned())
}

/// Converts a Python value into JSON, counting roughly how many bytes it
/// will take (for the size limit without serialising every event twice).
fn to_json(v: &Bound<'_, PyAny>, depth: usize, tally: &mut Tally) -> Result<Value, Bad> {
    // SAFETY: `v` is alive for the whole call and the GIL is held.
    unsafe { convert(v.py(), v.as_ptr(), depth, tally) }
}

/// [`to_json`] over borrowed pointers: the exact built-in types (what
/// events are made of) are read with the C API directly, without the
/// reference counting and checks of pyo3's safe wrappers (each a call into
/// CPython under the stable ABI); anything else takes [`convert_other`].
///
/// # Safety
/// `v` is a live object and the GIL is held. Borrowed pointers stay valid
/// because nothing here runs Python code: exact types and subclasses are
/// read through C accessors that ignore overridden methods, and no Python
/// object is allocated (so no garbage collection runs finalizers) except
/// on the error path, which reads nothing borrowed afterwards.
unsafe fn convert(
    py: Python<'_>,
    v: *mut ffi::PyObject,
    depth: usize,
    tally: &mut Tally,
) -> Result<Value, Bad> {
    if depth > MAX_CONVERT_DEPTH {
        return Err(Bad::new(format!(
            "nested more than {MAX_CONVERT_DEPTH} levels deep (or contains itself)"
        )));
    }
    tally.bytes += 8;
    if ffi::PyUnicode_CheckExact(v) != 0 {
        let s = text(py, v)?;
        tally.bytes += s.len();
        return Ok(Value::String(s));
    }
    if ffi::PyDict_CheckExact(v) != 0 {
        return dict(py, v, depth, tally);
    }
    if v == ffi::Py_None() {
        return Ok(Value::Null);
    }
    if v == ffi::Py_True() {
        return Ok(Value::Bool(true));
    }
    if v == ffi::Py_False() {
        return Ok(Value::Bool(false));
    }
    if ffi::PyLong_CheckExact(v) != 0 {
        return int(py, v);
    }
    if ffi::PyFloat_CheckExact(v) != 0 {
        return float(ffi::PyFloat_AsDouble(v));
    }
    if ffi::PyList_CheckExact(v) != 0 {
        tally.depth = tally.depth.max(depth + 1);
        let n = ffi::PyList_Size(v);
        let mut out = Vec::with_capacity(n.max(0) as usize);
        for i in 0..n {
            // Borrowed, and the list cannot change while no Python code runs.
            let item = ffi::PyList_GetItem(v, i);
            out.push(
                convert(py, item, depth + 1, tally)
                    .map_err(|bad| bad.under(Step::Index(i as usize)))?,
            );
        }
        return Ok(Value::Array(out));
    }
    convert_other(&Bound::from_borrowed_ptr(py, v), depth, tally)
}

/// A dict's entries, in the dict's order.
///
/// # Safety
/// As [`convert`]; `d` is a dict (exact or subclass: its own storage is
/// read, as `json.dumps` does).
unsafe fn dict(
    py: Python<'_>,
    d: *mut ffi::PyObject,
    depth: usize,
    tally: &mut Tally,
) -> Result<Value, Bad> {
    tally.depth = tally.depth.max(depth + 1);
    let mut map = Map::new();
    let mut pos: ffi::Py_ssize_t = 0;
    let mut k: *mut ffi::PyObject = std::ptr::null_mut();
    let mut val: *mut ffi::PyObject = std::ptr::null_mut();
    while ffi::PyDict_Next(d, &mut pos, &mut k, &mut val) != 0 {
        if ffi::PyUnicode_Check(k) == 0 {
            return Err(Bad::new(format!(
                "keys must be strings, found a key of type {}",
                type_name(&Bound::from_borrowed_ptr(py, k))
            )));
        }
        let key = text(py, k)?;
        tally.bytes += key.len();
        match convert(py, val, depth + 1, tally) {
            Ok(value) => {
                map.insert(key, value);
            }
            Err(bad) => return Err(bad.under(Step::Key(key))),
        }
    }
    Ok(Value::Object(map))
}

/// An int (exact or subclass, read by value) within 64 bits.
///
/// # Safety
/// As [`convert`]; `v` is an int.
unsafe fn int(py: Python<'_>, v: *mut ffi::PyObject) -> Result<Value, Bad> {
    let mut overflow: std::os::raw::c_int = 0;
    let i = ffi::PyLong_AsLongLongAndOverflow(v, &mut overflow);
    if overflow == 0 {
        return Ok(Value::from(i));
    }
    if overflow > 0 {
        let u = ffi::PyLong_AsUnsignedLongLong(v);
        if PyErr::take(py).is_none() {
            return Ok(Value::from(u));
        }
    }
    Err(Bad::new(
        "an integer outside the 64-bit range JSON readers agree on",
    ))
}

fn float(x: f64) -> Result<Value, Bad> {
    Number::from_f64(x).map(Value::Number).ok_or_else(|| {
        Bad::new(format!(
            "{x} is not a JSON number (NaN and infinities are not)"
        ))
    })
}

/// Subclasses of the JSON types (an `enum.StrEnum` member, an `IntEnum`, a
/// dict subclass), tuples, and the error for anything else.
///
/// # Safety
/// As [`convert`].
unsafe fn convert_other(
    v: &Bound<'_, PyAny>,
    depth: usize,
    tally: &mut Tally,
) -> Result<Value, Bad> {
    let py = v.py();
    // bool before int: True is an int in Python (bool cannot be subclassed).
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if v.cast::<PyString>().is_ok() {
        let s = text(py, v.as_ptr())?;
        tally.bytes += s.len();
        return Ok(Value::String(s));
    }
    if v.cast::<PyDict>().is_ok() {
        return dict(py, v.as_ptr(), depth, tally);
    }
    if v.cast::<PyInt>().is_ok() {
        return int(py, v.as_ptr());
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        return float(f.value());
    }
    let items: Option<Vec<Bound<'_, PyAny>>> = if let Ok(l) = v.cast::<PyList>() {
        Some(l.iter().collect())
    } else if let Ok(t) = v.cast::<PyTuple>() {
        Some(t.iter().collect())
    } else {
        None
    };
    if let Some(items) = items {
        tally.depth = tally.depth.max(depth + 1);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(
                convert(py, item.as_ptr(), depth + 1, tally)
                    .map_err(|bad| bad.under(Step::Index(i)))?,
            );
        }
        return Ok(Value::Array(out));
    }
    Err(Bad::new(format!(
        "a {} is not JSON; convert it first (datetime: .isoformat(), bytes: base64, Decimal: str or float)",
        type_name(v)
    )))
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "value".into())
}

fn invalid(py: Python<'_>, field: &str, message: String, errors: Vec<(String, String)>) -> PyErr {
    let err = InvalidEvent::new_err(message);
    let value = err.value(py);
    let _ = value.setattr("field", field);
    let _ = value.setattr("errors", errors);
    err
}

/// Now as RFC 3339 in UTC with microseconds (`2026-12-03T07:14:03.123456Z`).
fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let micros = now.microsecond();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        micros
    )
}

/// Converts, completes and validates one event; returns it and its id.
fn prepare(
    py: Python<'_>,
    event: &Bound<'_, PyAny>,
    max_event_bytes: usize,
) -> PyResult<(Value, String)> {
    let mut tally = Tally::default();
    let value = to_json(event, 0, &mut tally).map_err(|bad| {
        let field = bad.field();
        let message = format!("{}: {}", display_path(&field), bad.detail);
        invalid(py, &field, message, vec![(field.clone(), bad.detail)])
    })?;
    let Value::Object(mut map) = value else {
        return Err(invalid(
            py,
            "",
            format!("an event must be a dict, not a {}", type_name(event)),
            vec![],
        ));
    };
    if !map.contains_key("id") {
        map.insert("id".into(), Value::String(uuid::Uuid::now_v7().to_string()));
    }
    if !map.contains_key("time") {
        map.insert("time".into(), Value::String(now_rfc3339()));
    }
    let id = match aiaudit_event::schema::validate_measured(&map, tally.depth) {
        Ok(id) => id,
        Err(errors) => {
            let first = &errors[0];
            let message = if errors.len() == 1 {
                format!("{}: {}", display_path(&first.path), first.detail)
            } else {
                format!(
                    "{}: {} (and {} more error(s))",
                    display_path(&first.path),
                    first.detail,
                    errors.len() - 1
                )
            };
            let list = errors
                .iter()
                .map(|e| (e.path.clone(), e.detail.clone()))
                .collect();
            return Err(invalid(py, &first.path.clone(), message, list));
        }
    };
    // The estimate is below the serialised size by at most the escapes;
    // serialise only when it could matter.
    if tally.bytes.saturating_mul(6) > max_event_bytes {
        let exact = serde_json::to_vec(&map)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if exact > max_event_bytes {
            return Err(invalid(
                py,
                "",
                format!("the event is {exact} bytes of JSON; the limit is {max_event_bytes} (max_event_bytes, the ledger's default)"),
                vec![],
            ));
        }
    }
    Ok((Value::Object(map), id))
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "the event"
    } else {
        path
    }
}

/// Forks this process has gone through (counted in each child by a
/// `pthread_atfork` handler): an emitter made before the last fork belongs
/// to the parent. Cheaper than `getpid` on every `emit`, and it also sees
/// forks that bypass Python's `os.fork`.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, Ordering::SeqCst);
}

fn watch_forks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a handler that only increments an atomic, which
        // is async-signal-safe as a child handler of fork must be.
        unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
    });
}

/// The emitter, owned by the process that made it.
#[pyclass(frozen, module = "aiaudit._native")]
struct NativeEmitter {
    /// Never dropped in a forked child: its threads are the parent's.
    inner: ManuallyDrop<RwLock<Option<Emitter>>>,
    owner_pid: u32,
    /// [`FORKS`] when it was made.
    generation: u64,
    max_event_bytes: usize,
}

impl NativeEmitter {
    fn in_owner(&self) -> bool {
        FORKS.load(Ordering::SeqCst) == self.generation
    }
}

impl Drop for NativeEmitter {
    fn drop(&mut self) {
        if self.in_owner() {
            // SAFETY: dropped exactly once, here.
            unsafe { ManuallyDrop::drop(&mut self.inner) };
        }
    }
}

fn emit_error(e: EmitError) -> PyErr {
    match e {
        EmitError::QueueFull => QueueFull::new_err(
            "the emitter's queue is full; the event was dropped (on_full=\"drop\")",
        ),
        EmitError::Closed => EmitterClosed::new_err("the emitter is closed"),
        EmitError::Spool(e) => SpoolFailure::new_err(e.to_string()),
        EmitError::Config(m) => PyValueError::new_err(m),
        EmitError::Unsignable { error, .. } => {
            InvalidEvent::new_err(format!("the event cannot be signed: {error}"))
        }
        other => AuditError::new_err(other.to_string()),
    }
}

fn spool_error(e: SpoolError) -> PyErr {
    SpoolFailure::new_err(e.to_string())
}

impl NativeEmitter {
    fn check_owner(&self) -> PyResult<()> {
        if !self.in_owner() {
            return Err(EmitterClosed::new_err(format!(
                "this Emitter belongs to process {} (this is a forked child): create a new Emitter with its own spool_dir here",
                self.owner_pid
            )));
        }
        Ok(())
    }
}

#[pymethods]
impl NativeEmitter {
    #[new]
    #[pyo3(signature = (url, token, spool_dir, signing_key, signature_format, ca_cert_pem, on_full, max_spool_bytes, batch_size, batch_interval, queue_capacity, max_backoff, max_event_bytes, compression))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: String,
        token: Option<String>,
        spool_dir: Option<String>,
        signing_key: Option<String>,
        signature_format: &str,
        ca_cert_pem: Option<Vec<u8>>,
        on_full: &str,
        max_spool_bytes: u64,
        batch_size: usize,
        batch_interval: f64,
        queue_capacity: usize,
        max_backoff: f64,
        max_event_bytes: usize,
        compression: &str,
    ) -> PyResult<Self> {
        let mut b = Emitter::builder()
            .endpoint(url)
            .spool_max_bytes(max_spool_bytes)
            .batch_size(batch_size)
            .batch_interval(seconds(batch_interval, "batch_interval")?)
            .queue_capacity(queue_capacity)
            .max_backoff(seconds(max_backoff, "max_backoff")?)
            .full_policy(match on_full {
                "block" => FullPolicy::Block,
                "drop" => FullPolicy::Drop,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "on_full: \"block\" or \"drop\", not {other:?}"
                    )))
                }
            });
        b = b.compression(match compression {
            "auto" => Compression::Auto,
            "zstd" => Compression::Zstd,
            "gzip" => Compression::Gzip,
            "off" => Compression::Off,
            other => {
                return Err(PyValueError::new_err(format!(
                    "compression: \"auto\", \"zstd\", \"gzip\" or \"off\", not {other:?}"
                )))
            }
        });
        if let Some(t) = token {
            b = b.token(t);
        }
        if let Some(dir) = spool_dir {
            b = b.spool_dir(dir);
        }
        if let Some(key) = signing_key {
            let signer = aiaudit_tlog::Signer::parse(key.trim())
                .map_err(|e| PyValueError::new_err(format!("signing_key: {e}")))?;
            b = b.signing_key(signer);
        }
        b = b.signature_format(SignatureFormat::parse(signature_format).ok_or_else(|| {
            PyValueError::new_err(
                "signature_format: \"aiaudit-batch-v2\" (RFC 8785) or \"aiaudit-batch-v1\"",
            )
        })?);
        if let Some(pem) = ca_cert_pem {
            b = b.ca_cert_pem(pem);
        }
        let emitter = py.detach(|| b.build()).map_err(|e| match e {
            EmitError::Spool(e) => spool_error(e),
            other => emit_error(other),
        })?;
        Ok(NativeEmitter {
            inner: ManuallyDrop::new(RwLock::new(Some(emitter))),
            owner_pid: std::process::id(),
            generation: FORKS.load(Ordering::SeqCst),
            max_event_bytes,
        })
    }

    /// Validates and queues one event; returns its id.
    fn emit(&self, py: Python<'_>, event: &Bound<'_, PyAny>) -> PyResult<String> {
        self.check_owner()?;
        let (value, id) = prepare(py, event, self.max_event_bytes)?;
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let emitter = guard
            .as_ref()
            .ok_or_else(|| EmitterClosed::new_err("the emitter is closed"))?;
        // The GIL is released only to wait for room in a full queue (or
        // for emit to count a drop): other Python threads run meanwhile.
        if let Some(value) = emitter.try_emit(value).map_err(emit_error)? {
            py.detach(|| emitter.emit(value)).map_err(emit_error)?;
        }
        Ok(id)
    }

    /// Waits up to `timeout` seconds for the ledger to acknowledge
    /// everything emitted before the call.
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        self.check_owner()?;
        let timeout = seconds(timeout, "timeout")?;
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let emitter = guard
            .as_ref()
            .ok_or_else(|| EmitterClosed::new_err("the emitter is closed"))?;
        match py.detach(|| emitter.flush_delivered(timeout)) {
            Ok(()) => Ok(true),
            Err(EmitError::Undelivered(_)) => Ok(false),
            Err(e) => Err(emit_error(e)),
        }
    }

    /// Returns once everything emitted before the call is in the spool (fsync'd).
    fn sync(&self, py: Python<'_>) -> PyResult<bool> {
        self.check_owner()?;
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let emitter = guard
            .as_ref()
            .ok_or_else(|| EmitterClosed::new_err("the emitter is closed"))?;
        py.detach(|| emitter.flush()).map_err(emit_error)?;
        Ok(true)
    }

    /// Closes: seals the queue into the spool and gives delivery up to
    /// `timeout` seconds; true when everything was delivered. Idempotent.
    fn close(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        self.check_owner()?;
        let timeout = seconds(timeout, "timeout")?;
        let taken = self.inner.write().unwrap_or_else(|p| p.into_inner()).take();
        let Some(emitter) = taken else {
            return Ok(true);
        };
        match py.detach(|| emitter.close(timeout)) {
            Ok(()) => Ok(true),
            Err(EmitError::Undelivered(_)) => Ok(false),
            Err(e) => Err(emit_error(e)),
        }
    }

    #[getter]
    fn closed(&self) -> bool {
        !self.in_owner()
            || self
                .inner
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_none()
    }

    /// Counters: (emitted, spooled, delivered, dropped, rejected, retries,
    /// duplicates, pending_batches, body_bytes, wire_bytes).
    fn counters(&self) -> PyResult<Counters> {
        self.check_owner()?;
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let Some(e) = guard.as_ref() else {
            return Ok((0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
        };
        let s = e.stats();
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Ok((
            l(&s.emitted),
            l(&s.queued),
            l(&s.delivered),
            l(&s.dropped),
            l(&s.rejected),
            l(&s.retries),
            l(&s.duplicates),
            e.pending_batches(),
            l(&s.body_bytes),
            l(&s.wire_bytes),
        ))
    }

    fn last_error(&self) -> Option<String> {
        if !self.in_owner() {
            return None;
        }
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().and_then(Emitter::last_error)
    }

    /// Called in a forked child (os.register_at_fork): gives up the child's
    /// share of the parent's spool lock and forgets the emitter without
    /// touching the lock the parent's threads may hold.
    fn abandon_after_fork(&self) {
        if self.in_owner() {
            return;
        }
        // try_write: a lock held at fork time stays held in the child for
        // ever; then the emitter simply stays forgotten with it.
        if let Ok(mut guard) = self.inner.try_write() {
            if let Some(emitter) = guard.take() {
                emitter.abandon_after_fork();
            }
        }
    }
}

/// What `counters` returns, in its order.
type Counters = (u64, u64, u64, u64, u64, u64, u64, u64, u64, u64);

fn seconds(s: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        PyValueError::new_err(format!("{what}: a non-negative number of seconds, not {s}"))
    })
}

/// Validates an event as the ledger will (after filling `id` and `time`
/// when absent) and returns the completed event as JSON text.
#[pyfunction]
#[pyo3(signature = (event, max_event_bytes = 16 << 20))]
fn validate_event(
    py: Python<'_>,
    event: &Bound<'_, PyAny>,
    max_event_bytes: usize,
) -> PyResult<String> {
    let (value, _) = prepare(py, event, max_event_bytes)?;
    Ok(value.to_string())
}

/// A Python attribute value as OTLP's `AnyValue` (what the OpenTelemetry
/// SDK allows: str, bool, int, float, bytes, sequences and mappings).
fn any_value(v: &Bound<'_, PyAny>, depth: usize) -> PyResult<aiaudit_otlp::AnyValue> {
    use aiaudit_otlp::any_value::Value as V;
    let value = if depth > MAX_CONVERT_DEPTH {
        return Err(PyValueError::new_err("attribute nested too deeply"));
    } else if v.is_none() {
        None
    } else if let Ok(b) = v.cast_exact::<PyBool>() {
        Some(V::BoolValue(b.is_true()))
    } else if v.cast::<PyInt>().is_ok() {
        Some(V::IntValue(v.extract::<i64>()?))
    } else if let Ok(f) = v.cast::<PyFloat>() {
        Some(V::DoubleValue(f.value()))
    } else if let Ok(s) = v.cast::<PyString>() {
        Some(V::StringValue(s.to_cow()?.into_owned()))
    } else if let Ok(b) = v.cast::<pyo3::types::PyBytes>() {
        Some(V::BytesValue(b.as_bytes().to_vec()))
    } else if let Ok(d) = v.cast::<PyDict>() {
        Some(V::KvlistValue(aiaudit_otlp::KeyValueList {
            values: key_values(d, depth + 1)?,
        }))
    } else if let Ok(items) = v.try_iter() {
        let mut values = Vec::new();
        for item in items {
            values.push(any_value(&item?, depth + 1)?);
        }
        Some(V::ArrayValue(aiaudit_otlp::ArrayValue { values }))
    } else {
        Some(V::StringValue(v.str()?.to_cow()?.into_owned()))
    };
    Ok(aiaudit_otlp::AnyValue { value })
}

fn key_values(d: &Bound<'_, PyDict>, depth: usize) -> PyResult<Vec<aiaudit_otlp::KeyValue>> {
    let mut out = Vec::with_capacity(d.len());
    for (k, v) in d.iter() {
        let key = k.str()?.to_cow()?.into_owned();
        out.push(aiaudit_otlp::KeyValue::new(key, any_value(&v, depth)?));
    }
    Ok(out)
}

/// Maps one OpenTelemetry log record to an audit event with the ledger's
/// own OTLP mapping (`aiaudit_otlp::map_record`, docs/otlp.md), so a record
/// exported here becomes the same event as one sent to `/v1/logs`.
/// Returns the event as JSON text; raises ValueError when the record cannot
/// be an event (no source, no action, no time).
#[pyfunction]
#[pyo3(signature = (resource, scope_name, scope_version, attributes, body, event_name, severity_text, time_unix_nano, observed_time_unix_nano, trace_id, span_id))]
#[allow(clippy::too_many_arguments)]
fn map_log_record(
    resource: &Bound<'_, PyDict>,
    scope_name: Option<String>,
    scope_version: Option<String>,
    attributes: &Bound<'_, PyDict>,
    body: &Bound<'_, PyAny>,
    event_name: Option<String>,
    severity_text: Option<String>,
    time_unix_nano: u64,
    observed_time_unix_nano: u64,
    trace_id: u128,
    span_id: u64,
) -> PyResult<String> {
    let scope = aiaudit_otlp::InstrumentationScope {
        name: scope_name.unwrap_or_default(),
        version: scope_version.unwrap_or_default(),
        ..Default::default()
    };
    let record = aiaudit_otlp::LogRecord {
        time_unix_nano,
        observed_time_unix_nano,
        severity_text: severity_text.unwrap_or_default(),
        body: if body.is_none() {
            None
        } else {
            Some(any_value(body, 0)?)
        },
        attributes: key_values(attributes, 0)?,
        trace_id: if trace_id == 0 {
            Vec::new()
        } else {
            trace_id.to_be_bytes().to_vec()
        },
        span_id: if span_id == 0 {
            Vec::new()
        } else {
            span_id.to_be_bytes().to_vec()
        },
        event_name: event_name.unwrap_or_default(),
        ..Default::default()
    };
    let event = aiaudit_otlp::map_record(&key_values(resource, 0)?, Some(&scope), &record)
        .map_err(PyValueError::new_err)?;
    Ok(event.to_string())
}

/// A new UUIDv7 (time-ordered), as the emitter assigns to events without an id.
#[pyfunction]
fn uuid7() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A new Ed25519 emitter key named `name`: (private key text, verifier key).
#[pyfunction]
fn generate_signing_key(name: &str) -> PyResult<(String, String)> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| PyRuntimeError::new_err(format!("reading randomness for the key: {e}")))?;
    let signer = aiaudit_tlog::Signer::from_seed(name, seed)
        .map_err(|e| PyValueError::new_err(format!("name: {e}")))?;
    Ok((signer.to_skey(), signer.verifier().to_vkey()))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The emitter's warnings and errors (a refused batch, a spool it
    // cannot write) go to Python's logging.
    let _ = pyo3_log::try_init();
    watch_forks();
    m.add_class::<NativeEmitter>()?;
    m.add_function(wrap_pyfunction!(validate_event, m)?)?;
    m.add_function(wrap_pyfunction!(uuid7, m)?)?;
    m.add_function(wrap_pyfunction!(map_log_record, m)?)?;
    m.add_function(wrap_pyfunction!(generate_signing_key, m)?)?;
    let py = m.py();
    m.add("AuditError", py.get_type::<AuditError>())?;
    m.add("InvalidEvent", py.get_type::<InvalidEvent>())?;
    m.add("SpoolFailure", py.get_type::<SpoolFailure>())?;
    m.add("QueueFull", py.get_type::<QueueFull>())?;
    m.add("EmitterClosed", py.get_type::<EmitterClosed>())?;
    Ok(())
}
