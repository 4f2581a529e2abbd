//! Reading a new password: one line of stdin (`--password-stdin`), or a
//! prompt with echo off on the terminal, asked twice.

use std::io::{BufRead, IsTerminal, Read, Write};

use nix::sys::termios::{self, LocalFlags, SetArg};
use zeroize::Zeroizing;

use crate::Failure;

/// Never read more than this from stdin: enough to see that a password is
/// too long, and not an unbounded allocation.
const READ_LIMIT: u64 = 2 << 20;

pub fn read(from_stdin: bool) -> Result<Zeroizing<Vec<u8>>, Failure> {
    if from_stdin {
        return read_line(&mut std::io::stdin().lock());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(
            "no password given: pass --password-stdin, or run on a terminal to be prompted".into(),
        ));
    }
    let first = prompt("New password: ")?;
    let second = prompt("Retype new password: ")?;
    if first != second {
        return Err(Failure::Usage("the passwords do not match".into()));
    }
    Ok(first)
}

/// The first line of `input`, without its line ending.
fn read_line(input: &mut impl BufRead) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut line = Zeroizing::new(Vec::new());
    input
        .take(READ_LIMIT)
        .read_until(b'\n', &mut line)
        .map_err(|e| {
            Failure::Runtime(format!("cannot read the password from standard input: {e}"))
        })?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(line)
}

fn prompt(text: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let io_err =
        |e: std::io::Error| Failure::Runtime(format!("cannot prompt for the password: {e}"));
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(&stdin).map_err(|e| io_err(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    // Echo goes off before the prompt shows, so nothing typed after it is echoed.
    termios::tcsetattr(&stdin, SetArg::TCSAFLUSH, &quiet).map_err(|e| io_err(e.into()))?;
    eprint!("{text}");
    let line = std::io::stderr()
        .flush()
        .map_err(io_err)
        .and_then(|()| read_line(&mut stdin.lock()));
    // Restore echo whatever happened.
    termios::tcsetattr(&stdin, SetArg::TCSAFLUSH, &saved).map_err(|e| io_err(e.into()))?;
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_without_ending() {
        let line = |s: &[u8]| read_line(&mut &s[..]).ok().map(|v| v.to_vec()).unwrap();
        assert_eq!(line(b"secret\nrest"), b"secret");
        assert_eq!(line(b"secret\r\n"), b"secret");
        assert_eq!(line(b"secret"), b"secret");
        assert_eq!(line(b""), b"");
        assert_eq!(line(b"\xff\xfe\n"), b"\xff\xfe");
    }
}
