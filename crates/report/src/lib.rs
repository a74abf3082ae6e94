//! m2ib-report: see DESIGN.md "The house".
