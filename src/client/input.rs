//! What the user typed, as it travels from the terminal ([`super::tty`]) or
//! standard input to the driver ([`super::conn`]). A module of its own so
//! that both import it and neither imports the other.

use tokio::sync::oneshot;

/// Something typed, from the terminal or standard input.
#[derive(Debug)]
pub(crate) enum Input {
    /// A line; the terminal waits on the reply before its next prompt.
    Line(String, Option<oneshot::Sender<()>>),
    /// The user is typing a message (or stopped).
    Typing(bool),
    /// End of input (Ctrl-D).
    Eof,
}
