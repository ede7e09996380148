"""XDS metadata (ebRIM 3.0) and its agreement with a CDA header: a domain library shared by the DMP and MSSanté/XDM plugins."""
