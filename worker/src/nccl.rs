//! The one NCCL: the `libnccl.so.2` that libtorch_cuda already mapped (the
//! torch wheel's), reached again with `RTLD_NOLOAD` so that a second copy can
//! never be loaded beside it, and the few entry points gradient all-reduce
//! needs. The CUDA device is set through the CUDA runtime libtorch mapped,
//! reached the same way. Nothing here needs a GPU until a communicator is made:
//! [`library`] and [`Library::version`] work on any machine whose libtorch
//! links NCCL (the CUDA wheel), which is what `vae-worker info` reports.
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use libloading::os::unix::{Library as Lib, Symbol, RTLD_NOW};

/// Names libtorch's NCCL may be mapped under; the first one found wins.
const NCCL_NAMES: [&str; 2] = ["libnccl.so.2", "libnccl.so"];
/// Names of the CUDA runtime libtorch_cuda links.
const CUDART_NAMES: [&str; 3] = ["libcudart.so.13", "libcudart.so.12", "libcudart.so"];

#[derive(Debug, thiserror::Error, Clone)]
pub enum NcclError {
    #[error("NCCL is not loaded in this process: libtorch links no libnccl.so.2 (a CPU-only libtorch?); use dist.backend = \"mpi\" or a CUDA build of torch")]
    NotLoaded,
    #[error("the CUDA runtime is not loaded in this process: libtorch links no libcudart")]
    NoCudaRuntime,
    #[error("{path}: symbol {symbol} not found: {message}")]
    Symbol {
        path: String,
        symbol: &'static str,
        message: String,
    },
    #[error("{call}: {message}")]
    Call { call: &'static str, message: String },
}

/// NCCL's `ncclUniqueId`: 128 opaque bytes, passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
struct UniqueId {
    internal: [c_char; 128],
}

type Comm = *mut c_void;
type GetVersion = unsafe extern "C" fn(*mut c_int) -> c_int;
type GetUniqueId = unsafe extern "C" fn(*mut UniqueId) -> c_int;
type CommInitRank = unsafe extern "C" fn(*mut Comm, c_int, UniqueId, c_int) -> c_int;
type AllReduce = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    c_int,
    c_int,
    Comm,
    *mut c_void,
) -> c_int;
type CommGetAsyncError = unsafe extern "C" fn(Comm, *mut c_int) -> c_int;
type CommFn = unsafe extern "C" fn(Comm) -> c_int;
type GetErrorString = unsafe extern "C" fn(c_int) -> *const c_char;
type SetDevice = unsafe extern "C" fn(c_int) -> c_int;

const NCCL_SUCCESS: c_int = 0;
const NCCL_IN_PROGRESS: c_int = 7;
const NCCL_SUM: c_int = 0;
const NCCL_FLOAT32: c_int = 7;
const NCCL_FLOAT64: c_int = 8;

/// The NCCL libtorch mapped, with its entry points resolved.
pub struct Library {
    path: PathBuf,
    version: c_int,
    get_unique_id: Symbol<GetUniqueId>,
    comm_init_rank: Symbol<CommInitRank>,
    all_reduce: Symbol<AllReduce>,
    comm_get_async_error: Symbol<CommGetAsyncError>,
    comm_abort: Symbol<CommFn>,
    comm_destroy: Symbol<CommFn>,
    get_error_string: Symbol<GetErrorString>,
    set_device: Symbol<SetDevice>,
    // The handles keep the symbols valid; the libraries stay mapped anyway
    // (libtorch holds them).
    _nccl: Lib,
    _cudart: Lib,
}

static LIBRARY: OnceLock<Result<Library, NcclError>> = OnceLock::new();

/// The process's NCCL, opened once; an error when libtorch mapped none.
pub fn library() -> Result<&'static Library, NcclError> {
    LIBRARY.get_or_init(open).as_ref().map_err(Clone::clone)
}

/// Opens the first of `names` already mapped into the process, never a new one.
fn already_loaded(names: &[&str]) -> Option<Lib> {
    names.iter().find_map(|name| {
        // SAFETY: RTLD_NOLOAD maps nothing new: no initialiser runs.
        unsafe { Lib::open(Some(*name), RTLD_NOW | libc::RTLD_NOLOAD) }.ok()
    })
}

fn open() -> Result<Library, NcclError> {
    let nccl = already_loaded(&NCCL_NAMES).ok_or(NcclError::NotLoaded)?;
    let cudart = already_loaded(&CUDART_NAMES).ok_or(NcclError::NoCudaRuntime)?;
    let get_version: Symbol<GetVersion> = symbol(&nccl, "ncclGetVersion", "libnccl")?;
    let path = path_of(*get_version as *const c_void);
    let shown = path.display().to_string();
    let mut version = 0;
    // SAFETY: ncclGetVersion only writes the int it is given.
    check(
        "ncclGetVersion",
        unsafe { (*get_version)(&mut version) },
        None,
    )?;
    Ok(Library {
        version,
        get_unique_id: symbol(&nccl, "ncclGetUniqueId", &shown)?,
        comm_init_rank: symbol(&nccl, "ncclCommInitRank", &shown)?,
        all_reduce: symbol(&nccl, "ncclAllReduce", &shown)?,
        comm_get_async_error: symbol(&nccl, "ncclCommGetAsyncError", &shown)?,
        comm_abort: symbol(&nccl, "ncclCommAbort", &shown)?,
        comm_destroy: symbol(&nccl, "ncclCommDestroy", &shown)?,
        get_error_string: symbol(&nccl, "ncclGetErrorString", &shown)?,
        set_device: symbol(&cudart, "cudaSetDevice", "libcudart")?,
        path,
        _nccl: nccl,
        _cudart: cudart,
    })
}

fn symbol<T>(lib: &Lib, name: &'static str, path: &str) -> Result<Symbol<T>, NcclError> {
    // SAFETY: each type above is the symbol's C prototype from nccl.h /
    // cuda_runtime_api.h.
    unsafe { lib.get::<T>(name.as_bytes()) }.map_err(|e| NcclError::Symbol {
        path: path.to_string(),
        symbol: name,
        message: e.to_string(),
    })
}

/// The file the code at `addr` was mapped from.
fn path_of(addr: *const c_void) -> PathBuf {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr fills `info` and returns 0 when `addr` is in no object.
    let found = unsafe { libc::dladdr(addr, info.as_mut_ptr()) } != 0;
    let info = unsafe { info.assume_init() };
    if !found || info.dli_fname.is_null() {
        return PathBuf::from("libnccl.so.2");
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(name.to_string_lossy().into_owned());
    std::fs::canonicalize(&path).unwrap_or(path)
}

/// `Ok` for ncclSuccess, else the call and NCCL's words for `code`.
fn check(call: &'static str, code: c_int, lib: Option<&Library>) -> Result<(), NcclError> {
    if code == NCCL_SUCCESS {
        return Ok(());
    }
    let words = lib.map_or_else(|| format!("error {code}"), |l| l.error_string(code));
    Err(NcclError::Call {
        call,
        message: words,
    })
}

impl Library {
    /// The file NCCL was mapped from.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// NCCL's version as `major.minor.patch`.
    pub fn version(&self) -> String {
        let v = self.version;
        // NCCL ≥ 2.9 encodes major·10000 + minor·100 + patch.
        format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
    }

    fn error_string(&self, code: c_int) -> String {
        // SAFETY: returns a static string for any code.
        let s = unsafe { (*self.get_error_string)(code) };
        if s.is_null() {
            return format!("error {code}");
        }
        // SAFETY: non-null, NUL-terminated, static.
        let words = unsafe { CStr::from_ptr(s) }.to_string_lossy();
        format!("{words} (error {code})")
    }

    /// A new unique id (rank 0 makes it; MPI broadcasts it).
    pub fn unique_id(&self) -> Result<[u8; 128], NcclError> {
        let mut id = UniqueId { internal: [0; 128] };
        // SAFETY: writes the id it is given.
        let code = unsafe { (*self.get_unique_id)(&mut id) };
        check("ncclGetUniqueId", code, Some(self))?;
        Ok(id.internal.map(|c| c as u8))
    }
}

fn aborted() -> NcclError {
    NcclError::Call {
        call: "ncclAllReduce",
        message: "the communicator was aborted after an NCCL error".into(),
    }
}

/// An NCCL communicator over the ranks that share `id`.
pub struct Communicator {
    lib: &'static Library,
    comm: Comm,
    /// Whether `comm` is still usable (not aborted by the watchdog, not
    /// destroyed); the watchdog's poller and `drop` take turns through it.
    live: Arc<Mutex<bool>>,
}

// SAFETY: NCCL communicators may be used from any thread; the watchdog only
// calls the thread-safe ncclCommGetAsyncError / ncclCommAbort.
unsafe impl Send for Communicator {}

impl Communicator {
    /// Joins the communicator `id` as `rank` of `size`, on CUDA device `ordinal`.
    pub fn new(ordinal: usize, rank: usize, size: usize, id: [u8; 128]) -> Result<Self, NcclError> {
        let lib = library()?;
        // NCCL takes the device from the calling thread's current device.
        // SAFETY: cudaSetDevice takes any int and reports a bad one.
        let code = unsafe { (*lib.set_device)(ordinal as c_int) };
        if code != 0 {
            return Err(NcclError::Call {
                call: "cudaSetDevice",
                message: format!("CUDA device {ordinal}: cudaError {code}"),
            });
        }
        let id = UniqueId {
            internal: id.map(|b| b as c_char),
        };
        let mut comm: Comm = std::ptr::null_mut();
        // SAFETY: writes the new communicator into `comm`.
        let code = unsafe { (*lib.comm_init_rank)(&mut comm, size as c_int, id, rank as c_int) };
        check("ncclCommInitRank", code, Some(lib))?;
        Ok(Communicator {
            lib,
            comm,
            live: Arc::new(Mutex::new(true)),
        })
    }

    /// In-place sum over all ranks of `numel` elements at device pointer
    /// `ptr` (f32 or f64 as `double`), on the legacy default stream. Once
    /// the watchdog has aborted the communicator this is an error, never a
    /// call on it: the check and the call hold the same lock as the abort.
    ///
    /// # Safety
    /// `ptr` points to `numel` elements of that type on this rank's device.
    pub unsafe fn all_reduce_sum(
        &self,
        ptr: *mut c_void,
        numel: usize,
        double: bool,
    ) -> Result<(), NcclError> {
        let live = self.live.lock().map_err(|_| aborted())?;
        if !*live {
            return Err(aborted());
        }
        let dtype = if double { NCCL_FLOAT64 } else { NCCL_FLOAT32 };
        let code = (*self.lib.all_reduce)(
            ptr,
            ptr,
            numel,
            dtype,
            NCCL_SUM,
            self.comm,
            std::ptr::null_mut(),
        );
        check("ncclAllReduce", code, Some(self.lib))
    }

    /// A function the watchdog polls: `Some(message)` once the communicator
    /// has an asynchronous error (then it is aborted, so waits end).
    pub fn error_poller(&self) -> impl Fn() -> Option<String> + Send + 'static {
        let lib = self.lib;
        let raw = self.comm as usize;
        let live = Arc::clone(&self.live);
        move || {
            let mut live = live.lock().ok()?;
            if !*live {
                return None;
            }
            let error = lib.poll_async_error(raw as Comm);
            *live = error.is_none();
            error
        }
    }
}

impl Library {
    fn poll_async_error(&self, comm: Comm) -> Option<String> {
        let mut err = NCCL_SUCCESS;
        // SAFETY: the caller holds `live`: `comm` is neither aborted nor destroyed.
        let polled = unsafe { (*self.comm_get_async_error)(comm, &mut err) };
        let bad = |r: c_int| r != NCCL_SUCCESS && r != NCCL_IN_PROGRESS;
        if !bad(polled) && !bad(err) {
            return None;
        }
        let code = if bad(err) { err } else { polled };
        // SAFETY: aborting from another thread is what NCCL provides it for.
        let _ = unsafe { (*self.comm_abort)(comm) };
        Some(format!(
            "NCCL reported {}; the communicator is aborted",
            self.error_string(code)
        ))
    }
}

impl Drop for Communicator {
    fn drop(&mut self) {
        let Ok(mut live) = self.live.lock() else {
            return;
        };
        if std::mem::replace(&mut *live, false) {
            // SAFETY: live, and never used after this.
            let _ = unsafe { (*self.lib.comm_destroy)(self.comm) };
        }
    }
}
