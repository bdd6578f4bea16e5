from accoil_sync.cli import main

main()
