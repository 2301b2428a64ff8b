//! Hard budgets, pure: a call is checked before it is made (its estimated tokens and cost
//! must fit what is left of the hour and the day) and accounted after (actual usage, cache
//! reads and writes at their prices). The spend lives in the policy status, so a restart
//! cannot reset it; the hour and the day roll over by the clock passed in.

use crate::api::{AdvisorSpend, BudgetDenial, BudgetLimit};
use crate::policy::{Budget, Usd};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Tokens one call used (or is estimated to use).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens billed at the full price.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache (a tenth of the input price).
    pub cache_read: u64,
    /// Input tokens written to the prompt cache (1.25 times the input price).
    pub cache_write: u64,
}

impl Usage {
    /// Every token counted against `tokensPerDay`.
    pub fn total(&self) -> u64 {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }
}

/// Which limit a call would pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Limit {
    /// `callsPerHour`.
    #[error("advisor.budget.callsPerHour is used up for this hour")]
    CallsPerHour,
    /// `tokensPerDay`.
    #[error("advisor.budget.tokensPerDay is used up for today")]
    TokensPerDay,
    /// `costPerDay`.
    #[error("advisor.budget.costPerDay is used up for today")]
    CostPerDay,
}

/// The price of `usage`, rounded up to the millionth of a dollar.
pub fn cost(usage: &Usage, b: &Budget) -> Usd {
    // Prices are millionths of a dollar per million tokens; everything is scaled by 40 so
    // that a tenth (cache reads) and 1.25 (cache writes) stay exact before the rounding.
    let t = |tokens: u64, price: Usd, times40: u128| {
        u128::from(tokens) * u128::from(price.micros) * times40
    };
    let scaled = t(usage.input, b.input_price_per_million, 40)
        + t(usage.output, b.output_price_per_million, 40)
        + t(usage.cache_read, b.input_price_per_million, 4)
        + t(usage.cache_write, b.input_price_per_million, 50);
    let micros = scaled.div_ceil(40 * 1_000_000);
    Usd {
        micros: u64::try_from(micros).unwrap_or(u64::MAX),
    }
}

fn hour_of(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second() - t.as_second().rem_euclid(3600)).unwrap_or(t)
}

fn day_of(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second() - t.as_second().rem_euclid(86_400)).unwrap_or(t)
}

/// The spend as of `now`: a new hour starts its call count at zero, a new (UTC) day its
/// tokens and cost.
pub fn roll(spend: &AdvisorSpend, now: Timestamp) -> AdvisorSpend {
    let mut s = spend.clone();
    let hour = hour_of(now);
    if s.hour_start.as_ref().map(|t| t.0) != Some(hour) {
        s.hour_start = Some(Time(hour));
        s.calls_this_hour = 0;
    }
    let day = day_of(now);
    if s.day_start.as_ref().map(|t| t.0) != Some(day) {
        s.day_start = Some(Time(day));
        s.tokens_today = 0;
        s.cost_today = Usd::default().to_string();
    }
    // A denial lasts as long as the period of its limit.
    if let Some(d) = &s.denied {
        let period = match d.limit {
            BudgetLimit::CallsPerHour => hour,
            BudgetLimit::TokensPerDay | BudgetLimit::CostPerDay => day,
        };
        if d.at.0 < period {
            s.denied = None;
        }
    }
    s
}

impl Limit {
    /// The API spelling.
    pub fn api(self) -> BudgetLimit {
        match self {
            Limit::CallsPerHour => BudgetLimit::CallsPerHour,
            Limit::TokensPerDay => BudgetLimit::TokensPerDay,
            Limit::CostPerDay => BudgetLimit::CostPerDay,
        }
    }

    /// The `BudgetExhausted` reason.
    pub fn reason(self) -> &'static str {
        match self {
            Limit::CallsPerHour => "CallsPerHour",
            Limit::TokensPerDay => "TokensPerDay",
            Limit::CostPerDay => "CostPerDay",
        }
    }

    /// A metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::CallsPerHour => "callsPerHour",
            Limit::TokensPerDay => "tokensPerDay",
            Limit::CostPerDay => "costPerDay",
        }
    }
}

/// The spend after a call was refused by `limit` (shown as `BudgetExhausted` until the
/// limit's hour or day is over).
pub fn deny(spend: &AdvisorSpend, limit: Limit, now: Timestamp) -> AdvisorSpend {
    let mut s = roll(spend, now);
    s.denied = Some(BudgetDenial {
        limit: limit.api(),
        at: Time(now),
    });
    s
}

/// The limit a budget is exhausted by at `now`, if any.
pub fn exhausted(spend: &AdvisorSpend, now: Timestamp) -> Option<Limit> {
    roll(spend, now).denied.map(|d| match d.limit {
        BudgetLimit::CallsPerHour => Limit::CallsPerHour,
        BudgetLimit::TokensPerDay => Limit::TokensPerDay,
        BudgetLimit::CostPerDay => Limit::CostPerDay,
    })
}

/// The spend after a reserved call ended: its estimate is given back and what it really
/// used is counted (the call itself stays counted).
pub fn settle(
    spend: &AdvisorSpend,
    b: &Budget,
    estimate: &Usage,
    actual: &Usage,
    now: Timestamp,
) -> AdvisorSpend {
    let mut s = roll(spend, now);
    s.tokens_today = s
        .tokens_today
        .saturating_sub(estimate.total())
        .saturating_add(actual.total());
    s.cost_today = Usd {
        micros: spent(&s)
            .micros
            .saturating_sub(cost(estimate, b).micros)
            .saturating_add(cost(actual, b).micros),
    }
    .to_string();
    s
}

fn spent(s: &AdvisorSpend) -> Usd {
    // An unreadable amount counts as the whole budget spent: fail closed.
    Usd::parse(&s.cost_today).unwrap_or(Usd { micros: u64::MAX })
}

/// Whether a call estimated at `estimate` fits the budget at `now`.
pub fn check(
    spend: &AdvisorSpend,
    b: &Budget,
    estimate: &Usage,
    now: Timestamp,
) -> Result<(), Limit> {
    let s = roll(spend, now);
    if s.calls_this_hour >= b.calls_per_hour {
        return Err(Limit::CallsPerHour);
    }
    if s.tokens_today.saturating_add(estimate.total()) > b.tokens_per_day {
        return Err(Limit::TokensPerDay);
    }
    let after = spent(&s).micros.saturating_add(cost(estimate, b).micros);
    if after > b.cost_per_day.micros {
        return Err(Limit::CostPerDay);
    }
    Ok(())
}

/// The spend after a call that used `usage` (counted even when the answer was refused:
/// the provider billed it).
pub fn account(spend: &AdvisorSpend, b: &Budget, usage: &Usage, now: Timestamp) -> AdvisorSpend {
    let mut s = roll(spend, now);
    s.calls_this_hour = s.calls_this_hour.saturating_add(1);
    s.tokens_today = s.tokens_today.saturating_add(usage.total());
    s.cost_today = Usd {
        micros: spent(&s).micros.saturating_add(cost(usage, b).micros),
    }
    .to_string();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_settles_to_the_actual_usage_and_denials_expire() {
        let b = budget();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let est = Usage {
            input: 1000,
            output: 1024,
            ..Usage::default()
        };
        let real = Usage {
            input: 900,
            output: 100,
            cache_read: 400,
            ..Usage::default()
        };
        let reserved = account(&AdvisorSpend::default(), &b, &est, now);
        let settled = settle(&reserved, &b, &est, &real, now);
        let direct = account(&AdvisorSpend::default(), &b, &real, now);
        assert_eq!(settled.tokens_today, direct.tokens_today);
        assert_eq!(settled.cost_today, direct.cost_today);
        assert_eq!(settled.calls_this_hour, 1);
        // A failed call (nothing billed) gives the whole estimate back.
        let none = settle(&reserved, &b, &est, &Usage::default(), now);
        assert_eq!((none.tokens_today, none.cost_today.as_str()), (0, "0"));

        let d = deny(&settled, Limit::CallsPerHour, now);
        assert_eq!(exhausted(&d, now), Some(Limit::CallsPerHour));
        let next_hour = Timestamp::from_second(1_800_000_000 + 3600).unwrap();
        assert_eq!(
            exhausted(&d, next_hour),
            None,
            "a new hour clears callsPerHour"
        );
        let d = deny(&settled, Limit::CostPerDay, now);
        assert_eq!(exhausted(&d, next_hour), Some(Limit::CostPerDay));
        let next_day = Timestamp::from_second(1_800_000_000 + 86_400).unwrap();
        assert_eq!(exhausted(&d, next_day), None);
    }

    fn budget() -> Budget {
        Budget {
            calls_per_hour: 3,
            tokens_per_day: 10_000,
            cost_per_day: Usd::parse("0.05").unwrap(),
            input_price_per_million: Usd::parse("3").unwrap(),
            output_price_per_million: Usd::parse("15").unwrap(),
            max_tokens_per_call: 500,
        }
    }
    fn at(h: i64, m: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 - 1_800_000_000 % 86_400 + h * 3600 + m * 60).unwrap()
    }
    fn usage(input: u64, output: u64) -> Usage {
        Usage {
            input,
            output,
            ..Default::default()
        }
    }

    #[test]
    fn prices_are_exact() {
        let b = budget();
        // 1,000 in at $3/M = $0.003; 200 out at $15/M = $0.003.
        assert_eq!(cost(&usage(1000, 200), &b).to_string(), "0.006");
        // Cache reads at a tenth, writes at 1.25x the input price.
        let cached = Usage {
            cache_read: 10_000,
            cache_write: 1_000,
            ..Default::default()
        };
        assert_eq!(cost(&cached, &b).to_string(), "0.00675");
        // Rounded up, never down: one token still costs.
        assert_eq!(cost(&usage(1, 0), &b).micros, 3);
        assert_eq!(cost(&usage(u64::MAX, u64::MAX), &b).micros, u64::MAX);
    }

    #[test]
    fn limits_hold_and_roll_over() {
        let b = budget();
        let mut s = AdvisorSpend::default();
        let est = usage(1000, 500);
        // Calls per hour.
        for _ in 0..3 {
            assert_eq!(check(&s, &b, &est, at(1, 0)), Ok(()));
            s = account(&s, &b, &usage(1000, 200), at(1, 1));
        }
        assert_eq!(check(&s, &b, &est, at(1, 59)), Err(Limit::CallsPerHour));
        assert_eq!(check(&s, &b, &est, at(2, 0)), Ok(()), "a new hour");
        // Tokens per day: 3,600 spent, 6,400 left.
        assert_eq!(s.tokens_today, 3600);
        assert_eq!(
            check(&s, &b, &usage(6000, 401), at(2, 0)),
            Err(Limit::TokensPerDay)
        );
        // Cost per day: $0.018 spent of $0.05.
        assert_eq!(s.cost_today, "0.018");
        assert_eq!(
            check(&s, &b, &usage(0, 2200), at(3, 0)),
            Err(Limit::CostPerDay)
        );
        // A new day clears tokens and cost (and the hour's calls).
        let next = at(24, 5);
        assert_eq!(check(&s, &b, &usage(6000, 2000), next), Ok(()));
        let r = roll(&s, next);
        assert_eq!(
            (r.tokens_today, r.cost_today.as_str(), r.calls_this_hour),
            (0, "0", 0)
        );
    }

    #[test]
    fn an_unreadable_spend_fails_closed() {
        let s = AdvisorSpend {
            cost_today: "lots".into(),
            day_start: Some(Time(at(0, 0))),
            ..Default::default()
        };
        assert_eq!(
            check(&s, &budget(), &usage(1, 1), at(0, 1)),
            Err(Limit::CostPerDay)
        );
    }
}
