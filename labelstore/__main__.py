from labelstore.cli import main

main()
