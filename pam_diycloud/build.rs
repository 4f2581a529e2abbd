//! Links the module `-z nodelete`: libpam dlopen()s it at every pam_start and
//! dlclose()s it at pam_end, so a process that logs many people in (a
//! JupyterHub, a login daemon) relocated the 4 MB module, re-initialised
//! SQLite and re-ran argon2's CPU feature checks for every login: 330 µs of
//! the 850 µs the module cost per login (measured). With nodelete the first
//! pam_start loads it and it stays; a new version of the file reaches such a
//! process when it restarts, as for any library it links.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
