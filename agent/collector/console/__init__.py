"""The provider's web console (`tally console`, docs/console.md): the
ledger, read-only, as pages for people: the fleet, each asset, the bills,
the alarms and a glossary. CPython only."""
