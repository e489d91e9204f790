"""One module per pipeline stage; each takes Settings and a BranchCatalog and returns a result object."""
