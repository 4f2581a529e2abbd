//! A minimal in-process PAM application: `pam_start_confdir` with a service
//! directory of the test's own, a conversation that answers every prompt
//! with one password, and the calls the benchmarks and probes need.

use std::ffi::{c_char, c_int, c_void, CString};
use std::path::Path;
use std::time::Duration;

pub const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;

/// libpam's `struct pam_message`, `pam_response` and `pam_conv`, for the
/// test applications' own conversation functions.
#[repr(C)]
pub struct PamMessage {
    pub style: c_int,
    pub msg: *const c_char,
}

#[repr(C)]
pub struct PamResponse {
    pub resp: *mut c_char,
    pub retcode: c_int,
}

/// A conversation callback as libpam calls it.
pub type ConvFn =
    extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;

#[repr(C)]
pub struct PamConv {
    pub conv: ConvFn,
    pub appdata: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    pub fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut c_void,
    ) -> c_int;
    pub fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    pub fn pam_acct_mgmt(pamh: *mut c_void, flags: c_int) -> c_int;
    pub fn pam_chauthtok(pamh: *mut c_void, flags: c_int) -> c_int;
    pub fn pam_open_session(pamh: *mut c_void, flags: c_int) -> c_int;
    pub fn pam_close_session(pamh: *mut c_void, flags: c_int) -> c_int;
    pub fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
}

/// Answers every prompt with the password in `data` (a `CString`), like
/// sshd's conversation does with what the user typed.
extern "C" fn answer(
    num: c_int,
    _msgs: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    data: *mut c_void,
) -> c_int {
    let Ok(count) = usize::try_from(num) else {
        return PAM_CONV_ERR;
    };
    // SAFETY: `data` is the `CString` owned by the `Pam` that started this
    // conversation and outlives it. libpam frees the array and each string
    // with free(), so both come from calloc/strdup.
    unsafe {
        let password = data.cast::<c_char>();
        let array = libc::calloc(count, std::mem::size_of::<PamResponse>()).cast::<PamResponse>();
        if array.is_null() {
            return PAM_BUF_ERR;
        }
        for i in 0..count {
            (*array.add(i)).resp = libc::strdup(password);
        }
        *resp = array;
    }
    PAM_SUCCESS
}

/// One PAM service and user, started afresh for every operation.
#[derive(Clone)]
pub struct Pam {
    pub service: CString,
    pub user: CString,
    pub confdir: CString,
    pub password: CString,
}

impl Pam {
    pub fn new(service: &str, user: &str, confdir: &Path, password: &str) -> Self {
        let c = |s: &str| CString::new(s).expect("no NUL");
        Self {
            service: c(service),
            user: c(user),
            confdir: c(confdir.to_str().expect("UTF-8 path")),
            password: c(password),
        }
    }

    /// pam_start, then `f` with the handle, then pam_end; returns `f`'s code.
    fn with_handle(&self, f: impl FnOnce(*mut c_void) -> c_int) -> c_int {
        let conv = PamConv {
            conv: answer,
            appdata: self.password.as_ptr().cast_mut().cast(),
        };
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and outlive the calls; `conv`
        // lives until pam_end; the handle is used only between start and end.
        let rc = unsafe {
            pam_start_confdir(
                self.service.as_ptr(),
                self.user.as_ptr(),
                &conv,
                self.confdir.as_ptr(),
                &mut handle,
            )
        };
        if rc != PAM_SUCCESS {
            return rc;
        }
        let rc = f(handle);
        // SAFETY: the handle came from pam_start_confdir and is ended once.
        unsafe { pam_end(handle, rc) };
        rc
    }

    /// pam_authenticate in a fresh transaction.
    pub fn login(&self) -> c_int {
        // SAFETY: a live handle from with_handle.
        self.with_handle(|h| unsafe { pam_authenticate(h, 0) })
    }

    /// pam_authenticate, then (if it passed) pam_acct_mgmt, in one
    /// transaction, as sshd runs them; returns the first failure's code.
    pub fn login_and_account(&self) -> c_int {
        self.with_handle(|h| {
            // SAFETY: a live handle from with_handle.
            match unsafe { pam_authenticate(h, 0) } {
                // SAFETY: as above.
                PAM_SUCCESS => unsafe { pam_acct_mgmt(h, 0) },
                rc => rc,
            }
        })
    }

    /// pam_open_session, `during` (with its result and how long the call
    /// took), then pam_close_session if it opened; returns the open's code.
    pub fn session(&self, during: impl FnOnce(c_int, Duration)) -> c_int {
        self.with_handle(|h| {
            let start = std::time::Instant::now();
            // SAFETY: a live handle from with_handle.
            let rc = unsafe { pam_open_session(h, 0) };
            during(rc, start.elapsed());
            if rc == PAM_SUCCESS {
                // SAFETY: as above; closing the session we opened.
                unsafe { pam_close_session(h, 0) };
            }
            rc
        })
    }
}

/// The `p` quantile (0..=1) of `samples`, which get sorted.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() - 1) as f64 * p).round() as usize;
    samples[index]
}

/// The median time of `rounds` runs of `f`.
pub fn median_time(rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = std::time::Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    percentile(&mut samples, 0.5)
}

/// Calls per second of `f` run `per_thread` times on each of `threads`
/// threads at once.
pub fn parallel_rate(threads: usize, per_thread: usize, f: impl Fn() + Sync) -> f64 {
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per_thread {
                    f();
                }
            });
        }
    });
    (threads * per_thread) as f64 / start.elapsed().as_secs_f64()
}
