"""The DMP plugin: a simulator of the national shared record, and CDA checks with no kit."""
