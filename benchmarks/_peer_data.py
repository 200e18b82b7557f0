"""The rows both peer workers (`_saelens_worker.py`, `_sparsify_worker.py`) train and validate on, and the FVU they
report: plain numpy and torch, so it runs in the peers' environment, without saenb."""
import numpy as np, torch

def load(acts_path:str, val_path:str, device:str='cpu') -> tuple:
    "`(train, val)`, fp32: the training rows in memory on the CPU, the validation rows on `device`."
    acts = torch.from_numpy(np.array(np.load(acts_path, mmap_mode='r'))).float()
    return acts, torch.from_numpy(np.load(val_path)).float().to(device)

def batches(acts:torch.Tensor, batch:int, seed:int, device:str='cpu'):
    "Full batches of `batch` rows, reshuffled each epoch from `seed`, on `device`: one stream for every peer."
    g = torch.Generator().manual_seed(seed)
    while True:
        for idx in torch.randperm(len(acts), generator=g).split(batch):
            if len(idx) == batch: yield acts[idx].to(device)

def fvu(rec:torch.Tensor, val:torch.Tensor) -> float:
    "Fraction of `val`'s variance (about its mean) that the reconstruction `rec` leaves unexplained."
    return (((rec - val) ** 2).sum() / ((val - val.mean(0)) ** 2).sum()).item()
