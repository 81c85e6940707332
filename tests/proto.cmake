# tests of the part
