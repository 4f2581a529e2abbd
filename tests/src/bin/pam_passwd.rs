//! `pam_chauthtok` as `passwd` does it, for the tests: a PAM application
//! with its own service directory (`pam_start_confdir`, no pam_wrapper)
//! whose conversation answers the prompts in order with the lines of
//! standard input, printing each prompt.
//!
//! Usage: pam_passwd CONFDIR SERVICE USER [--as-user]
//! `--as-user` (when run as root) first sets the real uid to nobody and
//! keeps the effective uid 0: what a user running the setuid `passwd` is.
//! Exits with the PAM return code.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::ffi::{c_int, c_void, CStr, CString};
use std::io::BufRead;

use diycloud_tests::pam_client::{
    pam_chauthtok, pam_end, pam_start_confdir, PamConv, PamMessage, PamResponse,
};

const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;

/// Answers each prompt with the next line of `data` (a `Vec<CString>`,
/// consumed from the front); shows the other messages.
// The libpam conversation callback: FFI by nature.
#[allow(unsafe_code)]
extern "C" fn answer(
    num: c_int,
    msgs: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    data: *mut c_void,
) -> c_int {
    let count = usize::try_from(num).unwrap_or(0);
    // SAFETY: libpam passes `num` valid messages and a pointer for the
    // responses, which it frees with free() (so calloc/strdup here);
    // `data` is the answers vector owned by main, alive during pam calls.
    unsafe {
        let answers = &mut *data.cast::<Vec<CString>>();
        let array = libc::calloc(count, std::mem::size_of::<PamResponse>()).cast::<PamResponse>();
        for i in 0..count {
            let msg = &**msgs.add(i);
            let text = CStr::from_ptr(msg.msg).to_string_lossy();
            println!("prompt[{}]: {text}", msg.style);
            if msg.style == PAM_PROMPT_ECHO_OFF || msg.style == PAM_PROMPT_ECHO_ON {
                let next = if answers.is_empty() {
                    CString::default()
                } else {
                    answers.remove(0)
                };
                (*array.add(i)).resp = libc::strdup(next.as_ptr());
            }
        }
        *resp = array;
    }
    0
}

// Drives libpam through its C API.
#[allow(unsafe_code)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: pam_passwd CONFDIR SERVICE USER [--as-user]");
        std::process::exit(2);
    }
    if args.get(3).map(String::as_str) == Some("--as-user") && nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::Uid::from_raw(65534);
        let root = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresuid(nobody, root, root).expect("setresuid");
    }
    let mut answers: Vec<CString> = std::io::stdin()
        .lock()
        .lines()
        .map(|l| CString::new(l.unwrap()).unwrap())
        .collect();
    let c = |s: &str| CString::new(s).unwrap();
    let (confdir, service, user) = (c(&args[0]), c(&args[1]), c(&args[2]));
    let conv = PamConv {
        conv: answer,
        appdata: (&mut answers as *mut Vec<CString>).cast(),
    };
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: NUL-terminated strings and `conv` outlive the calls; the
    // handle is used only between start and end.
    let rc = unsafe {
        let rc = pam_start_confdir(
            service.as_ptr(),
            user.as_ptr(),
            &conv,
            confdir.as_ptr(),
            &mut handle,
        );
        if rc != 0 {
            rc
        } else {
            let rc = pam_chauthtok(handle, 0);
            pam_end(handle, rc);
            rc
        }
    };
    println!("rc={rc}");
    std::process::exit(rc);
}
