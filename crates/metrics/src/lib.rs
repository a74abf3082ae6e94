//! m2ib-metrics: see DESIGN.md "The house".
