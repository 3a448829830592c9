//! A command's failure: one line for stderr, exit status 1.

use std::fmt;

/// Why a command failed, as the one line printed after `keycard: `.
///
/// Usage errors never get here: clap reports them itself, with exit status 2.
#[derive(Debug)]
pub struct Failure {
    message: String,
}

impl Failure {
    /// A failure saying `message` (what failed, and why).
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line whatever a driver's message holds, so a script can log it as is.
        let mut lines = self
            .message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty());
        if let Some(first) = lines.next() {
            f.write_str(first)?;
        }
        for line in lines {
            write!(f, " {line}")?;
        }
        Ok(())
    }
}

impl From<keycard::StoreError> for Failure {
    fn from(error: keycard::StoreError) -> Self {
        Failure::new(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let failure = Failure::new("cannot connect:\n  refused\n\n  try again");
        assert_eq!(failure.to_string(), "cannot connect: refused try again");
    }
}
