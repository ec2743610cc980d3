//! MRC / MRC2014 stacks: header, extended header, modes 0, 1, 2, 6, 12; reading and writing.
