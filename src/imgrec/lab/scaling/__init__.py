"""The scaling simulator (`simulate`) driven by the product's own policy, traces to drive
it (`traces`), models of other autoscalers (`peers`), and its check against live runs
(`calibrate`, `replay`)."""
