"""``torch.backends.cudnn`` stand-in: tinygen's GPU kernels are its own (no cuDNN), so these
flags are stored and ignored; its kernels are deterministic whatever ``deterministic`` says."""

enabled = True
benchmark = False
deterministic = False
allow_tf32 = False


def is_available() -> bool:
    return False


def version():
    return None
