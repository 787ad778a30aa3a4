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
    /// A delegate's server share `d2'` (owner: the delegation id).
    DelegateShare,
    /// A delegate's PIN verifier.
    DelegatePinVerifier,
    /// The owner's `wrapped_share` for the delegate (SM2-encrypted to B's transport key;
    /// wrapped again by the HSM so it rests, and is erased, like every other secret).
    DelegateHandover,
    /// The recovery key of a key's owner share (PROTOCOL.md "PIN reset"): 32 bytes the
    /// phone chose, returned to it once, at the next PIN reset.
    RecoveryKey,
    /// A delegate's recovery key (owner: the delegation id).
    DelegateRecoveryKey,
}

impl SecretKind {
    pub const ALL: [SecretKind; 10] = [
        SecretKind::Share,
        SecretKind::PinVerifier,
        SecretKind::TaskInput,
        SecretKind::TaskResult,
        SecretKind::DaemonKey,
        SecretKind::DelegateShare,
        SecretKind::DelegatePinVerifier,
        SecretKind::DelegateHandover,
        SecretKind::RecoveryKey,
        SecretKind::DelegateRecoveryKey,
    ];

    /// What a delegation owns.
    pub const DELEGATION: [SecretKind; 4] = [
        SecretKind::DelegateShare,
        SecretKind::DelegatePinVerifier,
        SecretKind::DelegateHandover,
        SecretKind::DelegateRecoveryKey,
    ];

    /// What a key's owner share owns (kept with the key record).
    pub const KEY_OWNED: [SecretKind; 3] = [SecretKind::Share, SecretKind::PinVerifier, SecretKind::RecoveryKey];

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
            SecretKind::DelegateShare => b"delegate-share",
            SecretKind::DelegatePinVerifier => b"delegate-pin-verifier",
            SecretKind::DelegateHandover => b"delegate-handover",
            SecretKind::RecoveryKey => b"recovery-key",
            SecretKind::DelegateRecoveryKey => b"delegate-recovery-key",
        }
    }
}
