from flipsketch.cli import main

main()
