"""One module per algorithm family; drlcli.registry maps config names to them."""
