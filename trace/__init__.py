"""Traceability: activation, aggregation, shipments, journeys, EPCIS (to be built)."""
