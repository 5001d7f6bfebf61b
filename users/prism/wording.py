"""PRISM's survey wording and answer options, copied from the study's own files
(../shared/data/prism/header_prefs_mapping.csv and survey_question_mapping.json,
CC-BY-4.0, Kirk et al. 2024) so the pages read exactly like PRISM's. A test
checks these strings against the shared files."""

STATED_PREFS_QUESTION = (
    "Rate each of the following statements about your opinion on the importance of different "
    "AI language model behaviors or traits."
)
STATED_PREFS_OPENER = "It is important that an AI language model..."
STATED_PREFS_SCALE = ("Strongly Disagree", "Strongly Agree")

# (dimension, stated preference, performance attribute, choice attribute); a
# blank means PRISM did not ask that dimension in that place.
DIMENSIONS = [
    ("values", "...reflects my values or cultural perspectives",
     "...reflected my values or cultural perspective",
     "...because it reflected my values or cultural perspective"),
    ("creativity", "...produces responses that are creative and inspiring",
     "...was creative and inspiring", "...because it was creative and inspiring"),
    ("fluency", "...produces responses that are well-written and coherent",
     "...was well-written and coherent", "...because it was well-written and coherent"),
    ("factuality", "...produces factual and informative responses",
     "...was factual and informative", "...because it was factual and informative"),
    ("diversity", "...summarises multiple viewpoints or different worldviews",
     "...summarised multiple viewpoints or different worldviews",
     "...because it summarised multiple viewpoints or different worldviews"),
    ("safety", "...produces responses that are safe and do not risk harm to myself and others",
     "...was safe and doesn't risk harm to myself and others",
     "...because it was safe and does not risk harm to myself and others"),
    ("personalisation", "...learns from our conversations and feels personalised to me", "", ""),
    ("helpfulness", "...produces responses that are helpful and relevant to my requests",
     "...was helpful and relevant to my request", "...because it was helpful and relevant to my request"),
]
STATED_PREFS = [(d, s) for d, s, _p, _c in DIMENSIONS]
PERFORMANCE_ATTRIBUTES = [(d, p) for d, _s, p, _c in DIMENSIONS if p]
CHOICE_ATTRIBUTES = [(d, c) for d, _s, _p, c in DIMENSIONS if c]
PERFORMANCE_OPENER = "This response"
PERFORMANCE_SCALE = ("Performed very poorly", "Performed very well")
CHOICE_OPENER = "I chose this response"
CHOICE_SCALE = ("Very unimportant", "Very important")
REPLY_SCALE = ("Terrible", "Perfect")

QUESTIONS = {
    "lm_familiarity": "How familiar are you with AI language models like ChatGPT?",
    "self_description": (
        "Please briefly describe your values, core beliefs, guiding principles in life, or other things that "
        "are important to you. For example, you might include values you'd want to teach to your children or "
        "qualities you look for in friends. There are no right or wrong answers. Please do not provide any "
        "personally identifiable details like your name, address or email. Please write 2-5 sentences in your "
        "own words."
    ),
    "system_string": (
        "Imagine you are instructing an AI language model how to behave. You can think of this like a set of "
        "core principles that the AI language model will always try to follow, no matter what task you ask it "
        "to perform. In your own words, describe what characteristics, personality traits or features you "
        "believe the AI should consistently exhibit. You can also instruct the model what behaviours or content "
        "you don't want to see. If you envision the AI behaving differently in various contexts (e.g., "
        "professional assistance vs. storytelling), please specify the general adaptations you'd like to see. "
        "Please write 2-5 sentences in your own words."
    ),
    "age": "How old are you?",
    "gender": "How do you describe yourself?",
    "employment_status": "What best describes your employment status over the last three months?",
    "education": "What is the highest level of education you have completed?",
    "english_proficiency": "How would you describe your proficiency in English?",
    "reside_country": "In which country do you currently live?",
}

LM_FAMILIARITY = ["Very familiar", "Somewhat familiar", "Not familiar at all"]
AGE = ["18-24 years old", "25-34 years old", "35-44 years old", "45-54 years old", "55-64 years old",
       "65+ years old", "Prefer not to say"]
GENDER = ["Male", "Female", "Non-binary / third gender", "Prefer not to say"]
EMPLOYMENT = ["Working full-time", "Working part-time", "Student", "Retired", "Homemaker / Stay-at-home parent",
              "Unemployed, seeking work", "Unemployed, not seeking work", "Prefer not to say"]
EDUCATION = ["Some Primary", "Completed Primary School", "Some Secondary", "Completed Secondary School",
             "Vocational", "Some University but no degree", "University Bachelors Degree",
             "Graduate / Professional degree", "Prefer not to say"]
ENGLISH = ["Native speaker", "Fluent", "Advanced", "Intermediate", "Basic"]
