//! Process configuration of payments: which gateway, its time limit, the sandbox's test
//! latencies and fingerprint key, and the cadence of the background work. Operator settings
//! that must agree across servers (amount bounds, carding thresholds) live in the database
//! instead ([`super::settings`]).

use std::fmt;

/// How long a gateway call may take before its outcome counts as unknown. Below the
/// default request time limit (30 s), so that a slow processor still gets an answer out.
pub const DEFAULT_GATEWAY_TIMEOUT_MS: u64 = 20_000;

/// The sandbox's answer time for every call: processor-like, short enough for a demo.
pub const DEFAULT_SANDBOX_LATENCY_MS: u64 = 250;

/// How long the sandbox's slow test card takes to answer a charge it has already made:
/// long enough to stop a server between charge and posting.
pub const DEFAULT_SANDBOX_SLOW_CHARGE_MS: u64 = 10_000;

/// How often a server reconciles pending payments and runs due auto-recharges.
pub const DEFAULT_TASKS_INTERVAL_MS: u64 = 5_000;

/// The sandbox's fingerprint key when none is configured. Public on purpose: the sandbox
/// accepts only its published test cards, so the key protects nothing; a production adapter
/// takes fingerprints from its processor.
pub const DEFAULT_SANDBOX_FINGERPRINT_KEY: &str =
    "73616e64626f782d66696e6765727072696e742d6b65792d6e6f742d736563726574";

/// Shortest fingerprint key accepted, in bytes (the size of an HMAC-SHA256 output).
const FINGERPRINT_KEY_BYTES_MIN: usize = 32;

/// The built-in card gateways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayKind {
    /// The sandbox: test cards only, state in the database.
    Sandbox,
}

impl GatewayKind {
    /// Parses the configured name.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "sandbox" => Ok(Self::Sandbox),
            other => Err(format!(
                "STEWARD_PAYMENT_GATEWAY: unknown gateway '{other}' (known: sandbox)"
            )),
        }
    }
}

/// The key of the sandbox's card fingerprints (HMAC-SHA256). `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct FingerprintKey(Vec<u8>);

impl FingerprintKey {
    /// Parses a hex key of at least 32 bytes.
    pub fn parse_hex(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "STEWARD_SANDBOX_FINGERPRINT_KEY must be at least {FINGERPRINT_KEY_BYTES_MIN} bytes in hex"
            )
        };
        if !text.len().is_multiple_of(2) || text.len() < 2 * FINGERPRINT_KEY_BYTES_MIN {
            return Err(invalid());
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(invalid)?;
        Ok(Self(bytes))
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey([redacted])")
    }
}

impl Default for FingerprintKey {
    fn default() -> Self {
        Self::parse_hex(DEFAULT_SANDBOX_FINGERPRINT_KEY).unwrap_or(Self(Vec::new()))
    }
}

/// Payments configuration of one process.
#[derive(Debug, Clone)]
pub struct PaymentsConfig {
    /// The gateway in use.
    pub gateway: GatewayKind,
    /// Time limit of one gateway call.
    pub gateway_timeout_ms: u64,
    /// The sandbox's latency of every call.
    pub sandbox_latency_ms: u64,
    /// The sandbox's answer time of its slow test card.
    pub sandbox_slow_charge_ms: u64,
    /// The sandbox's fingerprint key.
    pub sandbox_fingerprint_key: FingerprintKey,
    /// Cadence of reconciliation and auto-recharge; 0 runs no background work (the
    /// operator then runs `steward admin reconcile-payments`).
    pub tasks_interval_ms: u64,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            gateway: GatewayKind::Sandbox,
            gateway_timeout_ms: DEFAULT_GATEWAY_TIMEOUT_MS,
            sandbox_latency_ms: DEFAULT_SANDBOX_LATENCY_MS,
            sandbox_slow_charge_ms: DEFAULT_SANDBOX_SLOW_CHARGE_MS,
            sandbox_fingerprint_key: FingerprintKey::default(),
            tasks_interval_ms: DEFAULT_TASKS_INTERVAL_MS,
        }
    }
}

impl PaymentsConfig {
    /// How old a pending attempt must be before a gateway that has no record of it means
    /// "never charged": twice the call time limit, so no call of ours can still be on its
    /// way to the processor.
    pub fn pending_grace_ms(&self) -> i64 {
        i64::try_from(self.gateway_timeout_ms.saturating_mul(2)).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_the_key_stays_hidden() {
        let key = FingerprintKey::parse_hex(DEFAULT_SANDBOX_FINGERPRINT_KEY).unwrap();
        assert!(key.bytes().len() >= FINGERPRINT_KEY_BYTES_MIN);
        assert_eq!(format!("{key:?}"), "FingerprintKey([redacted])");
        assert!(FingerprintKey::parse_hex("abcd").is_err());
        assert!(GatewayKind::parse("sandbox").is_ok());
        assert!(GatewayKind::parse("stripe").is_err());
        assert_eq!(PaymentsConfig::default().pending_grace_ms(), 40_000);
    }
}
