//! Why a budget refused a request: stable reason codes, each mapped onto a registry code.

use portcullis_core::ErrorCode;
use portcullis_core::error::ReasonInfo;

/// A budget refusal the gateway answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A line would pass its limit (the hard stop at 100%).
    Exceeded,
    /// The model has no price (and no default) while a USD budget applies.
    UnpricedModel,
    /// The tool has no price (and no default) while a USD budget applies.
    UnpricedTool,
    /// New sessions in the scope are paused (95% reached) until the window resets or an admin
    /// lifts the pause.
    SessionPaused,
    /// The soft throttle's `approve` action needs a human approval.
    ApprovalRequired,
    /// The current window could not be computed (time outside the calendar range).
    Window,
}

/// Every reason code this crate defines (see [`Refusal::code`]).
pub const REASONS: &[ReasonInfo] = &[
    ReasonInfo {
        code: "budget_exceeded",
        maps_to: ErrorCode::BudgetExceeded,
        summary: "spent + reserved + this request's estimate would pass a budget's limit",
    },
    ReasonInfo {
        code: "budget_unpriced_model",
        maps_to: ErrorCode::BudgetUnpricedModel,
        summary: "the model has no price and no default model price while a USD budget applies",
    },
    ReasonInfo {
        code: "budget_unpriced_tool",
        maps_to: ErrorCode::BudgetUnpricedTool,
        summary: "the tool has no price and no default tool price while a USD budget applies",
    },
    ReasonInfo {
        code: "budget_session_paused",
        maps_to: ErrorCode::BudgetPaused,
        summary: "a budget reached 95%: new sessions in its scope wait for the window to reset \
                  or an admin to lift the pause",
    },
    ReasonInfo {
        code: "budget_approval_required",
        maps_to: ErrorCode::ApprovalRequired,
        summary: "a budget passed its soft-throttle threshold and its action needs a human approval",
    },
    ReasonInfo {
        code: "budget_window_error",
        maps_to: ErrorCode::Internal,
        summary: "the budget window could not be computed for the current time",
    },
];

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::Exceeded,
        Refusal::UnpricedModel,
        Refusal::UnpricedTool,
        Refusal::SessionPaused,
        Refusal::ApprovalRequired,
        Refusal::Window,
    ];

    /// The stable reason code (listed in [`REASONS`]).
    pub const fn code(self) -> &'static str {
        match self {
            Refusal::Exceeded => "budget_exceeded",
            Refusal::UnpricedModel => "budget_unpriced_model",
            Refusal::UnpricedTool => "budget_unpriced_tool",
            Refusal::SessionPaused => "budget_session_paused",
            Refusal::ApprovalRequired => "budget_approval_required",
            Refusal::Window => "budget_window_error",
        }
    }

    /// The registry code the gateway answers with.
    pub const fn error_code(self) -> ErrorCode {
        match self {
            Refusal::Exceeded => ErrorCode::BudgetExceeded,
            Refusal::SessionPaused => ErrorCode::BudgetPaused,
            Refusal::UnpricedModel => ErrorCode::BudgetUnpricedModel,
            Refusal::UnpricedTool => ErrorCode::BudgetUnpricedTool,
            Refusal::ApprovalRequired => ErrorCode::ApprovalRequired,
            Refusal::Window => ErrorCode::Internal,
        }
    }
}

impl From<&crate::cost::CostError> for Refusal {
    fn from(err: &crate::cost::CostError) -> Self {
        match err {
            crate::cost::CostError::UnknownModel(_) => Refusal::UnpricedModel,
            crate::cost::CostError::UnknownTool(_) => Refusal::UnpricedTool,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_in_the_reasons_table() {
        assert_eq!(Refusal::ALL.len(), REASONS.len());
        for refusal in Refusal::ALL {
            let info = REASONS.iter().find(|info| info.code == refusal.code());
            assert_eq!(info.map(|info| info.maps_to), Some(refusal.error_code()));
        }
    }
}
