"""Suite-wide settings.

One torch thread per test process: the suite is full of small tensor ops, for
which a second thread buys nothing and, on a busy 2-core machine, thread
contention made them up to hundreds of times slower. Tests that measure thread
behaviour set their own count.
"""

import torch

torch.set_num_threads(1)
