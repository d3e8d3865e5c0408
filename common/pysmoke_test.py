import sys, grpc
print(sys.executable, grpc.__version__)
