//! Rating: from a quantity and a rate to a cost, exactly.
//!
//! Voice is rated per minute with billing increments: the first `initial` seconds are
//! billed as a block, then blocks of `subsequent` seconds, each started block in full
//! (60/60 bills a 61-second call as 120 seconds; 6/6 as 66; 1/1 as 61). A zero-second call
//! bills nothing. Messages are rated per part and numbers per month, without increments.
//!
//! Rounding happens once, here: a voice cost is `rate_per_minute × billable_seconds / 60`
//! rounded to the nearest nano-unit, halves up. Other products multiply exactly.

use crate::pricing::{Increments, Product};

/// Seconds billed for a call of `seconds`, or the quantity itself for other products.
pub fn billable_quantity(product: Product, quantity: i64, increments: Option<Increments>) -> i64 {
    let Some(increments) = increments.filter(|_| product.is_voice()) else {
        return quantity.max(0);
    };
    if quantity <= 0 {
        return 0;
    }
    let initial = i64::from(increments.initial_s());
    let subsequent = i64::from(increments.subsequent_s());
    if quantity <= initial {
        return initial;
    }
    let rest = quantity - initial;
    // Whole started blocks (rest > 0, subsequent ≥ 1).
    let blocks = rest.saturating_add(subsequent - 1) / subsequent;
    initial.saturating_add(blocks.saturating_mul(subsequent))
}

/// The cost in nano-units of `billable` units at `rate_nanos` per rate unit; `None` if it
/// does not fit an `i64`.
pub fn cost_nanos(product: Product, rate_nanos: i64, billable: i64) -> Option<i64> {
    let product_nanos = i128::from(rate_nanos) * i128::from(billable);
    let cost = if product.is_voice() {
        // Per minute, charged per second: divide by 60 rounding halves up (both are ≥ 0).
        (product_nanos + 30) / 60
    } else {
        product_nanos
    };
    i64::try_from(cost).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn inc(initial: u32, subsequent: u32) -> Option<Increments> {
        Increments::new(initial, subsequent)
    }

    #[test]
    fn increments_round_up_to_whole_blocks() {
        let v = Product::VoiceOutbound;
        assert_eq!(billable_quantity(v, 61, inc(60, 60)), 120);
        assert_eq!(billable_quantity(v, 60, inc(60, 60)), 60);
        assert_eq!(billable_quantity(v, 1, inc(60, 60)), 60);
        assert_eq!(billable_quantity(v, 61, inc(6, 6)), 66);
        assert_eq!(billable_quantity(v, 61, inc(1, 1)), 61);
        assert_eq!(billable_quantity(v, 0, inc(60, 60)), 0);
        assert_eq!(billable_quantity(v, 31, inc(30, 6)), 36);
        assert_eq!(billable_quantity(Product::SmsOutbound, 3, None), 3);
    }

    #[test]
    fn voice_cost_is_per_minute_rounded_once() {
        // 0.0123 per minute for 66 seconds = 0.01353 exactly.
        assert_eq!(
            cost_nanos(Product::VoiceOutbound, 12_300_000, 66),
            Some(13_530_000)
        );
        // 1 nano per minute for 30 s is half a nano: rounds up; 29 s rounds down.
        assert_eq!(cost_nanos(Product::VoiceOutbound, 1, 30), Some(1));
        assert_eq!(cost_nanos(Product::VoiceOutbound, 1, 29), Some(0));
        assert_eq!(
            cost_nanos(Product::SmsOutbound, 4_000_000, 3),
            Some(12_000_000)
        );
        assert_eq!(cost_nanos(Product::SmsOutbound, i64::MAX, 2), None);
    }

    proptest! {
        #[test]
        fn billable_covers_the_call_within_one_block(q in 0_i64..1_000_000, i in 1_u32..=120, s in 1_u32..=120) {
            let b = billable_quantity(Product::VoiceOutbound, q, inc(i, s));
            if q == 0 {
                prop_assert_eq!(b, 0);
            } else {
                prop_assert!(b >= q);
                prop_assert!(b >= i64::from(i));
                prop_assert!(b - q < i64::from(i.max(s)));
                prop_assert!(b == i64::from(i) || (b - i64::from(i)) % i64::from(s) == 0);
            }
        }

        #[test]
        fn rating_is_monotone_in_quantity(q in 0_i64..1_000_000, extra in 0_i64..10_000, rate in 0_i64..100_000_000_000,
                                          i in 1_u32..=60, s in 1_u32..=60) {
            let v = Product::VoiceOutbound;
            let low = cost_nanos(v, rate, billable_quantity(v, q, inc(i, s))).unwrap();
            let high = cost_nanos(v, rate, billable_quantity(v, q + extra, inc(i, s))).unwrap();
            prop_assert!(low <= high);
            let sms_low = cost_nanos(Product::SmsOutbound, rate, q).unwrap();
            let sms_high = cost_nanos(Product::SmsOutbound, rate, q + extra).unwrap();
            prop_assert!(sms_low <= sms_high);
        }

        #[test]
        fn voice_cost_is_the_exact_quotient_rounded_half_up(rate in 0_i64..1_000_000_000_000, secs in 0_i64..100_000) {
            let cost = i128::from(cost_nanos(Product::VoiceOutbound, rate, secs).unwrap());
            let exact_times_60 = i128::from(rate) * i128::from(secs);
            // |cost - exact| ≤ 1/2, with exact halves going up.
            let diff = cost * 60 - exact_times_60;
            prop_assert!(diff > -30 && diff <= 30, "diff {}", diff);
        }
    }
}
