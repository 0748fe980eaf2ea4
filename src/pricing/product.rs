//! Products Steward rates, and their units.

/// A rated product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Product {
    /// Outbound calls, rated per minute with billing increments.
    VoiceOutbound,
    /// Inbound calls, rated per minute with billing increments.
    VoiceInbound,
    /// Outbound SMS, per message part.
    SmsOutbound,
    /// Inbound SMS, per message part.
    SmsInbound,
    /// Outbound MMS, per message part.
    MmsOutbound,
    /// Inbound MMS, per message part.
    MmsInbound,
    /// A phone number, per number per month.
    NumberRental,
}

impl Product {
    /// Every product, in a fixed order.
    pub const ALL: [Product; 7] = [
        Self::VoiceOutbound,
        Self::VoiceInbound,
        Self::SmsOutbound,
        Self::SmsInbound,
        Self::MmsOutbound,
        Self::MmsInbound,
        Self::NumberRental,
    ];

    /// The contract spelling (CSV, API, database).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VoiceOutbound => "voice_outbound",
            Self::VoiceInbound => "voice_inbound",
            Self::SmsOutbound => "sms_outbound",
            Self::SmsInbound => "sms_inbound",
            Self::MmsOutbound => "mms_outbound",
            Self::MmsInbound => "mms_inbound",
            Self::NumberRental => "number_rental",
        }
    }

    /// Reads the contract spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// Position in [`Product::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::VoiceOutbound => 0,
            Self::VoiceInbound => 1,
            Self::SmsOutbound => 2,
            Self::SmsInbound => 3,
            Self::MmsOutbound => 4,
            Self::MmsInbound => 5,
            Self::NumberRental => 6,
        }
    }

    /// Calls: quantity in seconds, rate per minute, billing increments.
    pub fn is_voice(self) -> bool {
        matches!(self, Self::VoiceOutbound | Self::VoiceInbound)
    }

    /// Messages: quantity in parts.
    pub fn is_messaging(self) -> bool {
        matches!(
            self,
            Self::SmsOutbound | Self::SmsInbound | Self::MmsOutbound | Self::MmsInbound
        )
    }

    /// Whether the usage is outbound.
    pub fn is_outbound(self) -> bool {
        matches!(
            self,
            Self::VoiceOutbound | Self::SmsOutbound | Self::MmsOutbound
        )
    }

    /// What the rate is measured in.
    pub fn rate_unit(self) -> &'static str {
        if self.is_voice() {
            "minutes"
        } else if self.is_messaging() {
            "parts"
        } else {
            "months"
        }
    }

    /// What the quantity of a usage event counts.
    pub fn quantity_unit(self) -> &'static str {
        if self.is_voice() {
            "seconds"
        } else if self.is_messaging() {
            "parts"
        } else {
            "months"
        }
    }

    /// Largest quantity one event may carry: a week-long call, a 255-part message, ten
    /// years of rental. Beyond it the event is refused as a bad quantity.
    pub fn quantity_max(self) -> i64 {
        if self.is_voice() {
            7 * 24 * 3600
        } else if self.is_messaging() {
            255
        } else {
            120
        }
    }
}
