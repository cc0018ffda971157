"""byzdask.models"""
