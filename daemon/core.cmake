# filled in with the part
