//! The kinds of secret the daemon keeps, always wrapped by the HSM.

/// What a kind of wrapped record is; part of the AAD so blobs cannot be swapped between kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    Share,
    PinVerifier,
    /// A task input that must not rest in clear (an `encrypt` task's plaintext).
    TaskInput,
    /// A task result that must not rest in clear (a `decrypt` task's plaintext).
    TaskResult,
    /// A private key the daemon itself holds (CA, seal maker, audit).
    DaemonKey,
}

impl SecretKind {
    pub const ALL: [SecretKind; 5] = [
        SecretKind::Share,
        SecretKind::PinVerifier,
        SecretKind::TaskInput,
        SecretKind::TaskResult,
        SecretKind::DaemonKey,
    ];

    pub fn from_label(label: &[u8]) -> Option<SecretKind> {
        Self::ALL.into_iter().find(|k| k.label() == label)
    }

    pub fn label(self) -> &'static [u8] {
        match self {
            SecretKind::Share => b"share",
            SecretKind::PinVerifier => b"pin-verifier",
            SecretKind::TaskInput => b"task-input",
            SecretKind::TaskResult => b"task-result",
            SecretKind::DaemonKey => b"daemon-key",
        }
    }
}
