import sys

from promo.local.standin_github.server import main

main(sys.argv[1:])
