//! What a usage report can show: its products, and for each the dimensions it groups by
//! and the metrics it sums. `/v2/usage_reports/options` lists exactly this, and a report
//! accepts exactly this.

use crate::pricing::Product;

/// A report product (Telnyx's names), covering one or more rated products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportProduct {
    /// Calls: `voice_outbound`, `voice_inbound`.
    SipTrunking,
    /// SMS and MMS, both directions.
    Messaging,
    /// Numbers rented.
    NumberRental,
}

/// A dimension to group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// The rated product (`voice_outbound`, `sms_inbound` …).
    Product,
    /// `inbound` or `outbound`.
    Direction,
    /// `SMS` or `MMS`.
    MessageType,
    /// ISO 3166 alpha-2 region of the destination (empty when it has none).
    CountryCode,
    /// Kind of destination number (geographic, mobile, toll-free …).
    NumberType,
    /// UTC day, `YYYY-MM-DD`.
    Date,
    /// The account that used it.
    UserId,
}

/// A metric to sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Events (calls, messages, rented numbers).
    Count,
    /// Call seconds as reported.
    CallSec,
    /// Call seconds billed (after billing increments).
    BilledSec,
    /// Message parts.
    Parts,
    /// Months of number rental.
    Months,
    /// Amount charged.
    Cost,
}

impl ReportProduct {
    /// Every report product.
    pub const ALL: [ReportProduct; 3] = [Self::SipTrunking, Self::Messaging, Self::NumberRental];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::SipTrunking => "sip-trunking",
            Self::Messaging => "messaging",
            Self::NumberRental => "number-rental",
        }
    }

    /// Reads the wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == text)
    }

    /// The rated products it covers.
    pub fn products(self) -> &'static [Product] {
        match self {
            Self::SipTrunking => &[Product::VoiceOutbound, Product::VoiceInbound],
            Self::Messaging => &[
                Product::SmsOutbound,
                Product::SmsInbound,
                Product::MmsOutbound,
                Product::MmsInbound,
            ],
            Self::NumberRental => &[Product::NumberRental],
        }
    }

    /// The dimensions it groups by.
    pub fn dimensions(self) -> &'static [Dimension] {
        use Dimension as D;
        match self {
            Self::SipTrunking => &[
                D::Product,
                D::Direction,
                D::CountryCode,
                D::NumberType,
                D::Date,
                D::UserId,
            ],
            Self::Messaging => &[
                D::Product,
                D::Direction,
                D::MessageType,
                D::CountryCode,
                D::NumberType,
                D::Date,
                D::UserId,
            ],
            Self::NumberRental => &[
                D::Product,
                D::CountryCode,
                D::NumberType,
                D::Date,
                D::UserId,
            ],
        }
    }

    /// The metrics it sums, all of them (see [`Metric::reveals_prices`] for who may ask).
    pub fn metrics(self) -> &'static [Metric] {
        use Metric as M;
        match self {
            Self::SipTrunking => &[M::Count, M::CallSec, M::BilledSec, M::Cost],
            Self::Messaging => &[M::Count, M::Parts, M::Cost],
            Self::NumberRental => &[M::Count, M::Months, M::Cost],
        }
    }

    /// The metrics a caller may ask for.
    pub fn metrics_for(self, may_see_prices: bool) -> Vec<Metric> {
        self.metrics()
            .iter()
            .copied()
            .filter(|m| may_see_prices || !m.reveals_prices())
            .collect()
    }
}

impl Dimension {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Product => "product",
            Self::Direction => "direction",
            Self::MessageType => "message_type",
            Self::CountryCode => "country_code",
            Self::NumberType => "number_type",
            Self::Date => "date",
            Self::UserId => "user_id",
        }
    }
}

impl Metric {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::CallSec => "call_sec",
            Self::BilledSec => "billed_sec",
            Self::Parts => "parts",
            Self::Months => "months",
            Self::Cost => "cost",
        }
    }

    /// Whether the metric shows prices or lets them be worked out: the cost itself, and the
    /// billed seconds (which reveal the billing increments of the price list). A managed
    /// account never gets these.
    pub fn reveals_prices(self) -> bool {
        matches!(self, Self::Cost | Self::BilledSec)
    }
}

/// `direction` of a rated product (none for number rental).
pub fn direction(product: Product) -> Option<&'static str> {
    match product {
        Product::NumberRental => None,
        p if p.is_outbound() => Some("outbound"),
        _ => Some("inbound"),
    }
}

/// `message_type` of a rated product (none but for messages).
pub fn message_type(product: Product) -> Option<&'static str> {
    match product {
        Product::SmsOutbound | Product::SmsInbound => Some("SMS"),
        Product::MmsOutbound | Product::MmsInbound => Some("MMS"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_product_covers_its_own_rated_products_and_none_twice() {
        let mut seen = Vec::new();
        for report in ReportProduct::ALL {
            assert_eq!(ReportProduct::parse(report.name()), Some(report));
            seen.extend_from_slice(report.products());
        }
        seen.sort();
        let mut all = Product::ALL.to_vec();
        all.sort();
        assert_eq!(seen, all);
    }

    #[test]
    fn hidden_metrics_are_the_price_revealing_ones() {
        let visible = ReportProduct::SipTrunking.metrics_for(false);
        assert_eq!(visible, [Metric::Count, Metric::CallSec]);
        assert_eq!(ReportProduct::Messaging.metrics_for(true).len(), 3);
    }
}
