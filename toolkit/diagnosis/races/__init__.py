"""diagnosis/races"""
