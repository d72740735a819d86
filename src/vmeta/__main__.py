from vmeta.cli import main

main()
