//! m2ib-runner: see DESIGN.md "The house".
