"""byzdask.kernels"""
