/**
 * Plain English text for generated (flite) speech in tests and benches.
 * Ordinary vocabulary, so the en-us language model covers it.
 */

export const STORY: readonly string[] = [
  'the morning train to the city was late again because of the heavy rain',
  'most of the people on the platform were reading the news on their phones',
  'a small boy asked his mother why the sky was so dark in the middle of the day',
  'she told him that the clouds were full of water and would soon move away',
  'when the train finally arrived everyone tried to find a seat near the window',
  'the man next to me was talking about a meeting he had later that afternoon',
  'he said that the company would open a new office in the north of the country',
  'his friend wanted to know how many people would work there next year',
  'the answer was about two hundred but nobody was really sure about the number',
  'outside the window the fields were green and the river was very high',
  'we passed a few old houses and a church with a tall white tower',
  'after an hour the rain stopped and the sun came out over the hills',
  'the conductor walked through the train and checked every ticket with care',
  'a young woman near the door was writing a letter to her family',
  'she told me that she was going to visit her sister for the first time in years',
  'her sister had moved to the city to study music at the university',
  'we talked about books and films until the train reached the last station',
  'the station was crowded with people waiting for their friends and families',
  'i walked out into the street and bought a cup of hot coffee from a small shop',
  'the owner of the shop said that business had been good this summer',
  'then i took a bus to the office and started work a little after ten',
  'my first task was to answer the messages that had arrived during the night',
  'later in the day we had a long meeting about the plans for the next month',
  'by the evening the sky was clear and the air was cool and fresh',
  'i walked home along the river and thought about the long day behind me',
];

/** Three speakers for meeting tests: different voices, different text. */
export const MEETING: Readonly<Record<'alice' | 'bob' | 'carol', readonly string[]>> = {
  alice: ['good morning everyone thank you for joining the call today', 'let us start with the plans for the new office'],
  bob: ['the building will be ready at the end of next month', 'we still need to hire about twenty people'],
  carol: ['i can help with the interviews next week', 'please send me the list of open positions'],
};
