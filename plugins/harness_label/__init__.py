"""The label e-santé's files a harness can judge: the DRC/CISP-2 -> CIM-10 transcoding table, the reversibility export."""
