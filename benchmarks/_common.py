"Shared pieces of the benchmark scripts: machine description and measured matrix-multiply peaks."
import json, os, platform, time
import torch

def device_name(device:str='cpu') -> str:
    "A short description of the device the benchmark ran on."
    if device.startswith('cuda') and torch.cuda.is_available(): return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()} (torch threads {torch.get_num_threads()})"

def matmul_peak(dtype=torch.float32, device:str='cpu', n:int=2048, seconds:float=0.7, trials:int=3) -> float:
    "Best measured FLOP/s of square matrix multiplies of size `n` in `dtype`, over `trials` windows: the practical peak figures are compared to."
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3): a @ b
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    best = 0.0
    for _ in range(trials):
        sync(); t0, reps = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds: a @ b; reps += 1
        sync(); best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t0))
    return best

def emit(record:dict):
    "Print the benchmark's one JSON line."
    print(json.dumps(record), flush=True)
