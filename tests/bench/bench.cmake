# benchmark programs
